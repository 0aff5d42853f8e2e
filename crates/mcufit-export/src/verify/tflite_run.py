"""Runs a .tflite on int8 inputs in TFLite Micro or LiteRT (reference kernels).

usage: tflite_run.py tflm|litert MODEL INPUTS.bin N OUTPUTS.bin
INPUTS.bin holds N inputs back to back (int8); OUTPUTS.bin receives N outputs.
The last stdout line is 'MCUFIT_RESULT {json}' (output size, arena figures for TFLM).
"""
import json
import sys

import numpy as np


def main():
    mode, model_path, in_path, n, out_path = sys.argv[1:6]
    n = int(n)
    data = open(model_path, "rb").read()
    x = np.fromfile(in_path, dtype=np.int8).reshape(n, -1)
    outs = []
    result = {"mode": mode}
    if mode == "tflm":
        from tflite_micro.python.tflite_micro import runtime

        interp = runtime.Interpreter.from_bytes(data, arena_size=max(16 * len(data), 4 << 20))
        shape = interp.get_input_details(0)["shape"]
        for row in x:
            interp.set_input(row.reshape(shape), 0)
            interp.invoke()
            outs.append(np.array(interp.get_output(0)).reshape(-1).astype(np.int8))
        sys.stdout.flush()
        interp.print_allocations()
    elif mode == "litert":
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        out = it.get_output_details()[0]
        for row in x:
            it.set_tensor(inp["index"], row.reshape(inp["shape"]))
            it.invoke()
            outs.append(it.get_tensor(out["index"]).reshape(-1).astype(np.int8))
    else:
        raise SystemExit("mode must be tflm or litert")
    np.asarray(outs, dtype=np.int8).tofile(out_path)
    result["output_size"] = int(outs[0].size) if outs else 0
    sys.stdout.flush()
    print("MCUFIT_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
