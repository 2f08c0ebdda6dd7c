// The plugin's C++ test programs' assertion: CHECK(cond) prints the failing line and counts it, so
// one run reports every failure; main() ends with `return finish();`, whose "OK: 0 failure(s)" line
// tests/plugins/test_tensorrt_plugin.py looks for.
#pragma once

#include <cstdio>

namespace passrt::test {

inline int& failures() {
  static int count = 0;
  return count;
}

inline void check(bool ok, int line, char const* what) {
  if (!ok) {
    std::printf("FAIL line %d: %s\n", line, what);
    ++failures();
  }
}

inline int finish() {
  std::printf("%s: %d failure(s)\n", failures() == 0 ? "OK" : "FAILED", failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace passrt::test

#define CHECK(cond) passrt::test::check((cond), __LINE__, #cond)
