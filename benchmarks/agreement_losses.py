"""Per frame: which dense detections a policy loses (or scores below the display threshold), and what
RegionDrop's masks did there (the share of the person's blocks recomputed / found changed, the threshold).

    python benchmarks/agreement_losses.py CLIP FRAMES "regiondrop;regiondrop:margin=2"

One JSON line per frame for the first policy (its rule's threshold and changed blocks are read by
wrapping RegionDropMasks.changed_blocks; with several regiondrop policies the last one's threshold is
what is printed), then AP50 and AP50@thr of every policy on the same frames."""
import sys, json, numpy as np, torch
from passrt.assets import resolve_input
from passrt.models import load_model
from passrt.runtime.backends import open_backend
from passrt.runtime.frames import stream_frames
from passrt.policies import PolicySpec
from passrt.metrics import iou_matrix, average_precision, LOW_SCORE
from passrt.policies import regiondrop as rd

clip, n, pol = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
spec = load_model("ssdlite-pedestrian")
fs = stream_frames(resolve_input(clip), n, block=10)
dense = open_backend("torch:dense", spec)
pols = pol.split(";")
sps = [open_backend(PolicySpec.parse(p), spec, dense_engine="ort") for p in pols]
sp = sps[0]
others = {p: [] for p in pols[1:]}
rec = {}
orig = rd.RegionDropMasks.changed_blocks
def cb(self, image, ref, limit, in_place):
    r = orig(self, image, ref, limit, in_place)
    rec["limit"] = float(limit) if not isinstance(limit, torch.Tensor) else float(limit.reshape(-1)[0])
    rec["changed"] = r[0, 0].clone()
    return r
rd.RegionDropMasks.changed_blocks = cb
ranked, truth = [], []
fi = 0
last_active = None
rows = []
for images in fs.blocks():
    for im in images:
        x = spec.preprocess(im)
        H, W = x.shape[2:]
        od = dense(x); os_ = sp(x)
        for p, b in zip(pols[1:], sps[1:]):
            o = b(x); d2 = spec.postprocess(o, (H, W), score_threshold=LOW_SCORE); others[p].append(((d2.boxes, d2.scores), b.model.stats().get("active_fraction", 1)))
        dd = spec.postprocess(od, (H, W), score_threshold=0.3)
        ds = spec.postprocess(os_, (H, W), score_threshold=LOW_SCORE)
        ranked.append((ds.boxes, ds.scores)); truth.append(dd.boxes)
        pol_obj = sp.model.policy
        st = sp.model.stats()
        blocks = getattr(getattr(pol_obj, "masks", None), "blocks", None)
        full = bool(getattr(getattr(pol_obj, "masks", None), "full", torch.ones(1)))
        B = 16
        if blocks is not None:
            act = blocks.float().numpy()
            if last_active is None or last_active.shape != act.shape:
                last_active = np.full(act.shape, fi, float)
            if full:
                last_active[:] = fi
            else:
                last_active[act > 0] = fi
        ap = average_precision([(ds.boxes, ds.scores)], [dd.boxes])
        iou = iou_matrix(dd.boxes, ds.boxes) if len(dd.boxes) and len(ds.boxes) else np.zeros((len(dd.boxes), 0))
        lost = []
        for i, b in enumerate(dd.boxes):
            best = iou[i].max() if iou.shape[1] else 0
            j = iou[i].argmax() if iou.shape[1] else -1
            sc = float(ds.scores[j]) if j >= 0 else 0
            if best < 0.5 or sc < 0.3:
                x0, y0, x1, y1 = [int(v) for v in b]
                bx = slice(max(y0 // B, 0), max(y1 // B + 1, 1)), slice(max(x0 // B, 0), max(x1 // B + 1, 1))
                cov = float(act[bx].mean()) if blocks is not None else -1
                chg = float(rec["changed"].numpy()[bx].mean()) if blocks is not None else -1
                age = float(fi - last_active[bx].max()) if blocks is not None else -1
                lost.append(dict(box=[x0, y0, x1, y1], w=x1 - x0, h=y1 - y0, dscore=float(dd.scores[i]),
                                 iou=round(float(best), 3), sscore=round(sc, 3), active_cov=round(cov, 2),
                                 changed_cov=round(chg, 2), frames_since_active=age))
        fp = int(((iou.max(0) if len(dd.boxes) else np.zeros(len(ds.boxes))) < 0.5)[ds.scores >= 0.3].sum()) if len(ds.boxes) else 0
        rows.append(dict(f=fi, ndense=len(dd.boxes), ap=round(ap, 3), active=round(st.get("active_fraction", 1), 3),
                         inp=round(float(getattr(pol_obj.masks, "fraction", torch.zeros(1))) if getattr(pol_obj, "masks", None) else -1, 3),
                         limit=rec.get("limit"), full=full, fp=fp, lost=lost))
        print(json.dumps(rows[-1]), flush=True)
        fi += 1
print("AP50", average_precision(ranked, truth), "AP50@thr",
      average_precision([(b[s >= .3], s[s >= .3]) for b, s in ranked], truth), "mean active",
      np.mean([r["active"] for r in rows]))
for p, v in others.items():
    r = [a for a, _ in v]
    print(p, "AP50", average_precision(r, truth), "AP50@thr", average_precision([(b[s >= .3], s[s >= .3]) for b, s in r], truth), "mean active", np.mean([a for _, a in v]))
