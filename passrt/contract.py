"""The contract between the Python side, the kernels and the TensorRT plugin, spelled once on the
Python side (the kernel header and pluginInfo.h spell it on the C++ side; tests check they agree).

The ONNX contract (ARCHITECTURE.md, decision 4):

A sparse model's graph is a pure function of its inputs: the per-frame state (the input
reference and every layer's output cache) is explicit I/O, so the same graph runs under
ONNX Runtime, TensorRT (with the plugin) and the reference runner, and several streams can
share one engine. Inputs: ``image`` [1, 3, H, W], ``refresh`` [1] (1.0 recomputes
everything: first frame, reset, periodic refresh) and ``state.<key>``; outputs: the model's
``output.<i>``, ``active_fraction`` [1] (executed / dense MACs, this frame) and one
``state_out.<key>`` per state input. The caller feeds ``state_out.<key>`` back as the next
frame's ``state.<key>`` (zeros and refresh = 1 on the first frame).
"""

# The TensorRT plugin's identity (plugins/tensorrt/pluginInfo.h); the ONNX parser finds it by these.
PLUGIN_NAME = "PassSparseConv2d"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "passrt"
DOMAIN = "passrt"

# Attribute names of the node = the plugin creator's field names (tests/export checks both).
ATTRIBUTES = ("kernel_shape", "strides", "dilations", "pads", "group", "tile", "activation",
              "activation_alpha", "post_activation")

# passrt::Activation codes of the kernel API (passrt_kernels.h); tests/test_contract.py checks that the
# header agrees. Every Python consumer (the op wrapper, the exported program, the node reference) reads
# them from here.
ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 2, "hardswish": 3, "silu": 4, "sigmoid": 5, "leaky_relu": 6}
ACTIVATION_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}

IMAGE = "image"
REFRESH = "refresh"
ACTIVE_FRACTION = "active_fraction"
STATE_IN = "state."
STATE_OUT = "state_out."
OUTPUT = "output."

# onnx model.metadata_props keys
META_MODEL = "passrt.model"
META_INPUT_SIZE = "passrt.input_size"
META_POLICY = "passrt.policy"
META_FORMAT = "passrt.format"  # "dense" or "sparse"


def state_output(state_input: str) -> str:
    """``state.<key>`` -> ``state_out.<key>``."""
    return STATE_OUT + state_input[len(STATE_IN):]


class GraphIO:
    """Which input/output of a graph is what under the contract (read once, for every runner).

    ``inputs``/``outputs``: name -> shape (any sequence of ints). Raises ``ValueError`` with one
    line when the graph breaks the contract; runners turn it into their user-facing error.
    """

    def __init__(self, inputs: dict, outputs: dict, ordered_outputs: list | None = None):
        names_in, names_out = list(inputs), list(outputs)
        others = [n for n in names_in if n != REFRESH and not n.startswith(STATE_IN)]
        image = IMAGE if IMAGE in names_in else (others[0] if len(others) == 1 else None)
        if image is None or len(others) != 1:
            raise ValueError(f"expected one image input ('{IMAGE}'), found inputs {names_in}")
        self.image = image
        self.refresh = REFRESH if REFRESH in names_in else None
        self.states = []  # (state.<key>, state_out.<key>)
        for name in names_in:
            if name.startswith(STATE_IN):
                pair = state_output(name)
                if pair not in outputs or _known(outputs[pair]) and tuple(outputs[pair]) != tuple(inputs[name]):
                    raise ValueError(f"state input {name} has no output {pair} of shape {tuple(inputs[name])}")
                self.states.append((name, pair))
        if self.sparse:  # output.<i>, in index order
            index = lambda n: int(n[len(OUTPUT):]) if n[len(OUTPUT):].isdigit() else 1 << 30  # noqa: E731
            self.outputs = sorted((n for n in names_out if n.startswith(OUTPUT)), key=index)
        else:  # dense: the graph's own order where known
            self.outputs = [n for n in (ordered_outputs or []) if n in outputs] or names_out
            self.outputs += [n for n in names_out if n not in self.outputs]
        if not self.outputs:
            raise ValueError(f"no model outputs among {names_out}")
        self.active = ACTIVE_FRACTION if ACTIVE_FRACTION in outputs else None

    @property
    def sparse(self) -> bool:
        return self.refresh is not None or bool(self.states)


def _known(shape) -> bool:
    """ONNX may leave an output's shape unstated (no dims, or 0 for unknown); only a stated one can disagree."""
    return len(shape) > 0 and all(int(d) > 0 for d in shape)


class StateLoop:
    """The per-frame loop of a graph whose state is explicit I/O, written once for every runner
    (the compiled-op executor, the ONNX reference runner, TensorRT).

    ``state``: ``state.<key>`` -> the current value (zeros at first). Each frame: :meth:`feeds`
    gives the inputs (image, refresh flag, state); after the run, :meth:`advance` takes the
    outputs by name, makes each ``state_out.<key>`` the next frame's ``state.<key>`` and returns
    the model's outputs. A runner that owns its output buffers gets the retired state buffers
    back from ``advance`` to write the next frame's state into (no copy: the two swap).
    """

    def __init__(self, io: GraphIO, state: dict):
        self.io, self.state = io, state
        self.refresh = True  # first frame, and after reset(): recompute everything
        self.active_fraction = 1.0

    def feeds(self, image, flag) -> dict:
        """``flag(value)`` makes the refresh input (1.0: recompute everything) in the runner's array type."""
        out = {self.io.image: image}
        if self.io.refresh is not None:
            out[self.io.refresh] = flag(1.0 if self.refresh else 0.0)
        out.update(self.state)
        return out

    def advance(self, results: dict) -> tuple[list, dict]:
        """(model outputs in order, {state_out.<key>: the retired state buffer})."""
        retired = {}
        for name_in, name_out in self.io.states:
            retired[name_out] = self.state[name_in]
            self.state[name_in] = results[name_out]
        self.refresh = False
        if self.io.active is not None:
            self.active_fraction = float(results[self.io.active].reshape(-1)[0])
        return [results[n] for n in self.io.outputs], retired

    def reset(self, zero) -> None:
        """Forget the state: ``zero(value)`` clears one state value (in place or as a new one)."""
        self.state = {k: zero(v) for k, v in self.state.items()}
        self.refresh = True
