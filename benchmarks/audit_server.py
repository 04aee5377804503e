"""Auditing through an OpenAI-compatible server: ``transformers serve`` on 127.0.0.1 with the embedded
SmolLM2-135M-Instruct, sampled one request at a time vs ``--concurrency`` requests in flight, and the audit through
the server compared with the same audit sampled locally (do the estimates agree within their intervals?).

    python benchmarks/audit_server.py                      # ~10 min on 2 cores
    python benchmarks/audit_server.py --n_speed 32 --n_audit 96

What it measures is this server on this machine: ``transformers serve`` without continuous batching runs one
``generate`` per request, so concurrency can only overlap HTTP, tokenization and Python work, not batch the model.
A server that batches (vLLM, ``transformers serve --continuous-batching`` on GPU) is where concurrency pays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "audit_server.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """``transformers serve MODEL`` on a free port; returns the process and its ``/v1`` URL once it answers."""
    port = _free_port()
    exe = Path(sys.executable).parent / "transformers"
    cmd = [
        str(exe),
        "serve",
        model_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        *extra,
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise SystemExit(f"{' '.join(cmd)} did not start") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n_speed", type=int, default=32, help="generations per throughput measurement")
    parser.add_argument("--n_audit", type=int, default=96, help="generations per audit (server and local)")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    from hf_fundamentals.integrations.audit.generation import GenerationConfig, generate_corpus
    from hf_fundamentals.integrations.audit.server import OpenAICompletionsBackend, server_bos_text
    from hf_fundamentals.integrations.cli.audit import main as hff_audit
    from hf_fundamentals.integrations.hub import load_tokenizer, resolve_model_path

    started = time.time()
    model_path, _ = resolve_model_path("embedded")
    bos = server_bos_text(load_tokenizer("embedded"))
    proc, url = start_server(model_path, [])
    speed: dict[str, float] = {}
    runs = {}
    try:
        config = GenerationConfig(
            n=args.n_speed, max_new_tokens=args.max_new_tokens, batch_size=16, seed=args.seed
        )
        for label, concurrency in (("serial", 1), ("concurrent", args.concurrency)):
            backend = OpenAICompletionsBackend(url, model_path, concurrency=concurrency, bos_text=bos)
            backend.generate(["The"], [10**6], config)  # warm the server (model load, first-call overheads)
            t0 = time.perf_counter()
            gens = generate_corpus(backend, config, None, progress=False)
            seconds = time.perf_counter() - t0
            speed[label] = len(gens) / seconds
            print(
                f"{label:>10} (concurrency {concurrency}): {speed[label]:.2f} generations/s ({seconds:.1f} s)"
            )

        with tempfile.TemporaryDirectory() as tmp:
            common = [
                "embedded",
                "--n_generations",
                str(args.n_audit),
                "--max_new_tokens",
                str(args.max_new_tokens),
            ]
            common += ["--seed", str(args.seed)]
            for label, extra in (
                ("local", []),
                (
                    "server",
                    [
                        "--server_url",
                        url,
                        "--server_model",
                        model_path,
                        "--concurrency",
                        str(args.concurrency),
                    ],
                ),
            ):
                out = Path(tmp) / label
                t0 = time.perf_counter()
                if hff_audit([*common, *extra, "--output_dir", str(out)]) != 0:
                    raise SystemExit(f"the {label} audit failed")
                report = json.loads((out / "audit.json").read_text())
                est = report["estimates"][report["default_method"]]
                runs[label] = {
                    "seconds": round(time.perf_counter() - t0, 1),
                    "point": est["point"],
                    "ci_low": est["ci_low"],
                    "ci_high": est["ci_high"],
                    "open_set": report.get("open_set"),
                }
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    names = list(runs["local"]["point"])
    overlaps = {
        n: max(runs[r]["ci_low"][n] for r in runs) <= min(runs[r]["ci_high"][n] for r in runs) for n in names
    }
    print(f"\n{'category':<14}{'local':>20}{'server':>20}  intervals overlap")
    for n in names:
        cells = [f"{100 * runs[r]['point'][n]:5.1f} [{100 * runs[r]['ci_low'][n]:4.1f}, {100 * runs[r]['ci_high'][n]:4.1f}]"
                 for r in ("local", "server")]  # fmt: skip
        print(f"{n:<14}{cells[0]:>20}{cells[1]:>20}  {overlaps[n]}")
    result = {
        "benchmark": "audit_server",
        "server": "transformers serve (no continuous batching), CPU, 127.0.0.1",
        "model": "embedded SmolLM2-135M-Instruct",
        "generations_per_second": {k: round(v, 3) for k, v in speed.items()},
        "concurrency": args.concurrency,
        "speedup_concurrent_vs_serial": round(speed["concurrent"] / speed["serial"], 3),
        "matches_local": all(overlaps.values()),
        "intervals_overlap": overlaps,
        "audits": runs,
        "settings": vars(args) | {"output": str(args.output)},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "seconds": round(time.time() - started, 1),
        "command": "python benchmarks/audit_server.py " + " ".join(sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\nmatches_local: {result['matches_local']}; written to {args.output} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
