// Tests the TensorRT-free half of the plugin (sparseConvAttributes.h): attribute parsing,
// validation through the kernel header's check, serialization and the shape checks. Needs only a
// C++ compiler (tests/plugins/test_tensorrt_plugin.py builds and runs it everywhere), so a mistake
// in this logic fails CI even where TensorRT's headers are absent.
#include "check.h"
#include "sparseConvAttributes.h"

#include <cstdio>
#include <cstring>
#include <vector>

using namespace passrt::trt;

namespace {

// The host smoke test's geometry: x [1,4,10,10], 3x3 kernel, stride 2, pads 1,0,1,2, group 2 -> 5x5, tile 2.
struct Fields {
  int32_t kernel[2]{3, 3};
  int32_t strides[2]{2, 2};
  int32_t pads[4]{1, 0, 1, 2};
  int32_t group{2};
  int32_t tile{2};
  int32_t activation{6};
  float alpha{0.2F};

  // Parses every field but `skip`; the status of the whole parse.
  bool parse(SparseConvAttributes& a, int32_t& nbInputs, Message& error, char const* skip = nullptr) const {
    FieldView const views[] = {{"kernel_shape", kernel, FieldType::kInt32, 2},
                               {"strides", strides, FieldType::kInt32, 2},
                               {"pads", pads, FieldType::kInt32, 4},
                               {"group", &group, FieldType::kInt32, 1},
                               {"tile", &tile, FieldType::kInt32, 1},
                               {"activation", &activation, FieldType::kInt32, 1},
                               {"activation_alpha", &alpha, FieldType::kFloat32, 1}};
    bool seen[kNbAttributes]{};
    for (FieldView const& v : views) {
      if ((skip == nullptr || std::strcmp(skip, v.name) != 0) &&
          parseField(v, a, nbInputs, seen, error) != FieldStatus::kOk) {
        return false;
      }
    }
    return finishParsing(a, seen, error);
  }
};

InputDims dims(Extent cacheW = 5) {
  InputDims d;
  Extent const shapes[6][4] = {{1, 4, 10, 10}, {1, 1, 3, 3}, {1, 8, 5, cacheW},
                               {8, 2, 3, 3},   {8, 0, 0, 0}, {1, 8, 5, cacheW}};
  for (int32_t i = 0; i < 6; ++i) {
    d.nbDims[i] = i == kInBias ? 1 : kRank;
    for (int32_t j = 0; j < kRank; ++j) {
      d.d[i][j] = shapes[i][j];
    }
  }
  return d;
}
}  // namespace

int main() {
  Fields f;
  SparseConvAttributes a;
  int32_t nbInputs{0};
  Message error;
  CHECK(f.parse(a, nbInputs, error));
  CHECK(a.kernelShape[0] == 3 && a.strides[1] == 2 && a.pads[3] == 2 && a.group == 2 && a.tile == 2);
  CHECK(a.activation == 6 && a.activationAlpha == 0.2F && a.postActivation == 0 && a.dilations[0] == 1);

  // Required attributes, types, unknown names and values the kernel header rejects.
  SparseConvAttributes b;
  CHECK(!f.parse(b, nbInputs, error, "tile") && std::strstr(error.text, "tile is required") != nullptr);
  bool seen[kNbAttributes]{};
  int32_t const one{1};
  CHECK(parseField({"activation_alpha", &one, FieldType::kInt32, 1}, b, nbInputs, seen, error) == FieldStatus::kError);
  CHECK(std::strstr(error.text, "activation_alpha") != nullptr);
  CHECK(parseField({"colour", &one, FieldType::kInt32, 1}, b, nbInputs, seen, error) == FieldStatus::kUnknown);
  CHECK(parseField({kNbInputsField, &one, FieldType::kInt32, 1}, b, nbInputs, seen, error) == FieldStatus::kOk);
  CHECK(nbInputs == 1);
  Fields bad = f;
  bad.activation = 42;
  CHECK(!bad.parse(b, nbInputs, error) && std::strstr(error.text, "activation") != nullptr);
  bad = f;
  bad.strides[0] = 0;
  CHECK(!bad.parse(b, nbInputs, error) && std::strstr(error.text, "stride") != nullptr);
  bad = f;
  bad.pads[2] = -1;
  CHECK(!bad.parse(b, nbInputs, error) && std::strstr(error.text, "bottom, right") != nullptr);

  // Shapes: consistent ones pass, unknown extents (-1) match anything, others are named.
  CHECK(checkShapes(a, dims(), 6, error));
  InputDims wild = dims();
  wild.d[kInX][2] = -1;
  wild.d[kInCache][2] = -1;
  CHECK(checkShapes(a, wild, 6, error));
  CHECK(!checkShapes(a, dims(6), 6, error) && std::strstr(error.text, "cache_in is 5x6") != nullptr);
  InputDims badMask = dims();
  badMask.d[kInMask][3] = 4;
  CHECK(!checkShapes(a, badMask, 6, error) && std::strstr(error.text, "tile_mask") != nullptr);

  // The kernel parameters, and the kernel header's full check on them.
  InputDims const d = dims();
  passrt::SparseConvParams const p = toParams(a, d.d[kInX], d.d[kInCache]);
  CHECK(p.in_channels == 4 && p.out_channels == 8 && p.out_h == 5 && p.pad_top == 1 && p.pad_left == 0);
  CHECK(p.act == passrt::Activation::kLeakyRelu && p.tilesH() == 3);
  CHECK(passrt::checkSparseConv2d(p) == nullptr);

  // Serialization round trip; a short or foreign buffer is refused with a reason.
  std::vector<char> blob(serialSize());
  serialize(a, 6, blob.data());
  SparseConvAttributes restored;
  int32_t restoredInputs{0};
  CHECK(deserialize(blob.data(), blob.size(), restored, restoredInputs, error));
  CHECK(std::memcmp(&restored, &a, sizeof(a)) == 0 && restoredInputs == 6);
  CHECK(!deserialize(blob.data(), blob.size() - 1, restored, restoredInputs, error));
  CHECK(std::strstr(error.text, "serialized plugin") != nullptr);
  blob[0] = static_cast<char>(blob[0] ^ 1);
  CHECK(!deserialize(blob.data(), blob.size(), restored, restoredInputs, error));

  return passrt::test::finish();
}
