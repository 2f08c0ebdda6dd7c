"""Several cameras through one Triton model with implicit state: one sequence per camera.

    python export/triton_client.py --url localhost:8001 --model passrt_ssdlite_pedestrian_regiondrop \
        --input rtsp://cam1/live --input rtsp://cam2/live

Needs a running tritonserver with the repository from `passrt export --triton DIR` (its engine built
on the GPU, the passrt plugin loaded) and `pip install tritonclient[grpc]`. Not run on our machines
(no GPU, no server): a sketch of the protocol, kept short. The server keeps each sequence's state (the
reference frame and every layer's cache); sequence_start=True on a camera's first frame sets the
graph's `refresh` input (CONTROL_SEQUENCE_START), so that frame runs dense.
"""

import argparse

import numpy as np
import tritonclient.grpc as grpcclient

from passrt.models import load_model
from passrt.runtime.sources import open_source


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="localhost:8001")
    p.add_argument("--model", required=True)
    p.add_argument("--input", action="append", required=True, help="a camera URI; repeat for several")
    p.add_argument("--frames", type=int, default=100)
    args = p.parse_args()
    client = grpcclient.InferenceServerClient(args.url)
    spec = load_model("ssdlite-pedestrian")  # the export's model: its pre- and postprocessing
    sources = [iter(open_source(uri)) for uri in args.input]
    for i in range(args.frames):
        for camera, source in enumerate(sources):  # round robin; real code would use one thread per camera
            frame = next(source)
            x = spec.preprocess(frame.image).numpy().astype(np.float32)
            image = grpcclient.InferInput("image", list(x.shape), "FP32")
            image.set_data_from_numpy(x)
            result = client.infer(args.model, [image], sequence_id=camera + 1,  # one sequence per camera
                                  sequence_start=(i == 0), sequence_end=(i == args.frames - 1))
            outputs = [result.as_numpy("output.0"), result.as_numpy("output.1")]
            det = spec.postprocess([o for o in outputs], frame.image.shape[:2], score_threshold=0.3)
            active = float(result.as_numpy("active_fraction")[0])
            print(f"camera {camera + 1} frame {i}: {len(det.scores)} people, {active:.0%} of the MACs")


if __name__ == "__main__":
    main()
