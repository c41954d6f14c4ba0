#!/usr/bin/env python3
"""Where an INT8 file's disagreement with FP32 comes from: the rounding of its activations or of its weights.

Each INT8 (QDQ) file is run four ways, by this CPU's fused kernels: as written; with every activation's
Quantize -> Dequantize pair taken out (the clip the quantizer folded into a pair put back from the float
graph it quantized); with every weight and bias read in float from that graph instead of its INT8 copy; and
with both. Each row prints top-1 agreement with FP32 on the photos (Clopper-Pearson 95% interval) and the mean
KL divergence of the file's probabilities from FP32's. With both taken out, a file made by post-training
quantization is its float source again (agreement 100%); a quantization-aware fine-tune's file is its
fine-tuned float weights, which agree with FP32 only as well as the fine-tune taught them (docs/quantization.md).

    python scripts/bench/int8_error_sources.py --fp32 build/base/efficientnet_lite0_imagenet_fp32.onnx \\
        --photos /tmp/distill-photos/eval \\
        ptq=build/ptq/efficientnet_lite0_imagenet_int8.onnx \\
        qat=build/qat/efficientnet_lite0_imagenet_int8.onnx,build/qat/efficientnet_lite0_imagenet_qat_fp32.onnx

NAME=INT8[,FLOAT]: FLOAT is the float file the INT8 file was quantized from (default: --fp32); for a folder
`edgerec train` wrote: --fp32 DIR/model-fp32.onnx and NAME=DIR/model.onnx.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from int8_fidelity import clopper_pearson, probabilities  # noqa: E402

from edge.core.devices import cpu_description  # noqa: E402
from edge.core.model import Model  # noqa: E402
from edge.errors import EdgerecError  # noqa: E402
from training.calibration import load_images  # noqa: E402

VARIANTS = ("weights and activations (as written)", "weights only", "activations only", "none")
"""What each row leaves rounded: the file as written, activations in float, weights in float, both in float."""


def activation_pairs(model: onnx.ModelProto) -> dict[str, list[tuple[onnx.NodeProto, onnx.NodeProto]]]:
    """(Quantize, Dequantize) pairs by the float tensor they round."""
    producer = {output: node for node in model.graph.node for output in node.output}
    pairs: dict[str, list[tuple[onnx.NodeProto, onnx.NodeProto]]] = {}
    for node in model.graph.node:
        q = producer.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            pairs.setdefault(q.input[0], []).append((q, node))
    return pairs


def float_activations(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without its activation pairs; where the source graph clipped a tensor the pair stood for
    (a ReLU6 the quantizer folded into the pair's range), the clip comes back."""
    model = copy(model)
    pairs = activation_pairs(model)
    dropped = {node.name for found in pairs.values() for pair in found for node in pair}
    renamed = {dq.output[0]: tensor for tensor, found in pairs.items() for _, dq in found}
    nodes = [node for node in model.graph.node if node.name not in dropped]
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    nodes += [onnx.helper.make_node("Identity", [renamed[out.name]], [out.name], name=out.name + "_unrounded")
              for out in model.graph.output if out.name in renamed]  # e.g. `features`, a Dequantize's output
    clips = {node.output[0]: node for node in source.graph.node if node.op_type == "Clip"}
    produced = {output: node for node in nodes for output in node.output}
    limits = {init.name: init for init in source.graph.initializer}
    for tensor in pairs:
        clip, node = clips.get(tensor), produced.get(tensor)
        if clip is None or node is None or node.op_type == "Clip":
            continue
        node.output[:] = [tensor + "_unclipped" if name == tensor else name for name in node.output]
        bounds = [f"{tensor}_clip_{i}" for i in range(len(clip.input) - 1)]
        for name, bound in zip(bounds, clip.input[1:]):
            model.graph.initializer.append(renamed_tensor(limits[bound], name))
        nodes.insert(nodes.index(node) + 1, onnx.helper.make_node(
            "Clip", [tensor + "_unclipped", *bounds], [tensor], name=tensor + "_clip", domain=clip.domain))
    return with_nodes(model, nodes)


def float_weights(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` reading each weight and bias from the source graph: every Dequantize of an INT8 initializer
    whose float original (its name less "_quantized") the source holds is replaced by that original."""
    model = copy(model)
    originals = {init.name: init for init in source.graph.initializer}
    stored = {init.name for init in model.graph.initializer}
    replaced = set()
    for node in model.graph.node:
        original = originals.get(node.input[0].removesuffix("_quantized"))
        if node.op_type == "DequantizeLinear" and node.input[0] in stored and original is not None:
            model.graph.initializer.append(renamed_tensor(original, node.output[0]))
            replaced.add(node.name)
    if not replaced:
        raise EdgerecError("no weight of the INT8 file has a float original in its source file (NAME=INT8,FLOAT)")
    return with_nodes(model, [node for node in model.graph.node if node.name not in replaced])


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.ModelProto.FromString(model.SerializeToString())


def renamed_tensor(tensor: onnx.TensorProto, name: str) -> onnx.TensorProto:
    out = onnx.TensorProto()
    out.CopyFrom(tensor)
    out.name = name
    return out


def with_nodes(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def variants(model: onnx.ModelProto, source: onnx.ModelProto) -> dict[str, onnx.ModelProto]:
    activations = float_activations(model, source)
    return dict(zip(VARIANTS, (model, activations, float_weights(model, source), float_weights(activations, source))))


def row(name: str, variant: str, probs: np.ndarray, fp32: np.ndarray) -> str:
    same = int((probs.argmax(1) == fp32.argmax(1)).sum())
    low, high = clopper_pearson(same, len(fp32))
    kl = float(np.mean(np.sum(fp32 * (np.log(np.clip(fp32, 1e-12, 1)) - np.log(np.clip(probs, 1e-12, 1))), 1)))
    return f"| {name} | {variant} | {same}/{len(fp32)}, {same / len(fp32):.1%} ({low:.1%}-{high:.1%}) | {kl:.2e} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True, help="the FP32 file the INT8 files must follow")
    parser.add_argument("--photos", type=Path, action="append", required=True,
                        help="unlabelled real photos (a folder or file; repeat for more)")
    parser.add_argument("int8", nargs="+", metavar="NAME=INT8[,FLOAT]")
    args = parser.parse_args(argv)
    if any("=" not in a for a in args.int8):
        parser.error("INT8 files are given as NAME=INT8[,FLOAT]")
    try:
        photos = load_images(args.photos, Model.load(args.fp32, device="cpu").geometry)
        fp32 = probabilities(args.fp32, photos)
        print(f"CPU: {cpu_description()}; {len(photos)} photos; FP32 {args.fp32}")
        print("| file | INT8 rounding left in | agreement with FP32, 95% CI | mean KL from FP32 |")
        print("|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for name, files in (a.split("=", 1) for a in args.int8):
                int8, _, source = files.partition(",")
                built = variants(onnx.load(int8), onnx.load(source or str(args.fp32)))
                for variant, model in built.items():
                    path = Path(tmp) / "variant.onnx"
                    onnx.save(model, str(path))
                    print(row(name, variant, probabilities(path, photos), fp32), flush=True)
    except (EdgerecError, OSError) as exc:
        print(f"int8_error_sources: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
