"""Face models on a GPU with PyTorch CUDA: embedding and MTCNN stage throughput.

Run on a machine with a CUDA GPU:  python benchmarks/gpu_models.py WEIGHTS_DIR OUT.json
WEIGHTS_DIR holds dlib_face_recognition_resnet_model_v1.dat and pnet/rnet/onet.pt.
The endpoint image serves the same weights through onnxruntime-gpu (CUDA EP);
this benchmark measures the models themselves with torch because that is what
the lent GPU machine could run (see docs/face-engine.md).
"""

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model_factory.facemodels.mtcnn import load_stage  # noqa: E402
from training.dlib_torch import DlibResNet  # noqa: E402


def timed(fn, repeat: int) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs, after warm-up, synchronised."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main(weights: Path, out: Path) -> None:
    device = torch.device("cuda")
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "embedding": [], "mtcnn": []}
    model = DlibResNet.from_dat(str(weights / "dlib_face_recognition_resnet_model_v1.dat")).to(device).eval()
    for dtype in (torch.float32, torch.float16):
        net = model.to(dtype=dtype, memory_format=torch.channels_last)
        for batch in (1, 32, 256, 1024):
            chips = torch.rand(batch, 3, 150, 150, device=device, dtype=dtype).mul_(255)
            chips = chips.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                seconds = timed(lambda net=net, chips=chips: net(chips), 20)
            results["embedding"].append(
                {
                    "dtype": str(dtype).split(".")[-1],
                    "batch": batch,
                    "ms_per_batch": seconds * 1000,
                    "faces_per_s": batch / seconds,
                }
            )
    # fp16 must agree with fp32 closely enough to keep the calibrated threshold.
    chips = torch.rand(64, 3, 150, 150, device=device).mul_(255)
    with torch.inference_mode():
        ref = model.float()(chips)
        half = model.half()(chips.half()).float()
    results["fp16_max_abs_diff"] = float((ref - half).abs().max())
    for name, size, batch in (("pnet", 1000, 1), ("rnet", 24, 512), ("onet", 48, 256)):
        stage = load_stage(name, weights).to(device)
        pixels = torch.rand(batch, 3, size, size if name != "pnet" else 1333, device=device).mul_(255)
        with torch.inference_mode():
            seconds = timed(lambda stage=stage, pixels=pixels: stage(pixels), 20)
        results["mtcnn"].append({"stage": name, "input": list(pixels.shape), "ms": seconds * 1000})
    results["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
