"""The embedded model's audit: SmolLM2-135M-Instruct on the built-in offline taxonomy, through ``hff audit``.

Two prompt settings (LLMSurgeon-style neutral lead-ins, and unconditional BOS-only sampling) so the table shows
how much the answer depends on how the model is sampled. There is no ground truth: SmolLM2's corpus
(FineWeb-Edu, DCLM, The Stack, Cosmopedia, ...) is not made of these eight domains, so the interesting output is
the diagnostics, which should say the taxonomy does not fit.

    python benchmarks/audit_embedded.py                  # ~5 min on 2 cores
    python benchmarks/audit_embedded.py --n_generations 96
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "audit_embedded.json"
PROMPTS = ("neutral", "bos")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n_generations", type=int, default=192)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    from hf_fundamentals.integrations.cli.audit import main as hff_audit

    started = time.time()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for prompts in PROMPTS:
            out = Path(tmp) / prompts
            argv = ["embedded", "--prompts", prompts, "--n_generations", str(args.n_generations)]
            argv += ["--max_new_tokens", str(args.max_new_tokens), "--seed", str(args.seed)]
            argv += ["--output_dir", str(out)]
            if hff_audit(argv) != 0:
                raise SystemExit(f"hff audit {' '.join(argv)} failed")
            report = json.loads((out / "audit.json").read_text())
            default = report["default_method"]
            runs[prompts] = {
                "command": "hff audit " + " ".join(argv[:-2]),
                "default_method": default,
                "estimate": report["estimates"][default]["point"],
                "interval_low": report["estimates"][default]["ci_low"],
                "interval_high": report["estimates"][default]["ci_high"],
                "all_estimators": {m: e["point"] for m, e in report["estimates"].items()},
                "classifier_accuracy": report["classifier_report"]["accuracy"],
                "diagnostics": report["diagnostics"],
                "generations_used": report["generations"]["used"],
                "seconds": report["seconds"],
                "sample_generations": [
                    json.loads(line)["text"][:200]
                    for line in (out / "generations.jsonl").read_text().splitlines()[1:4]
                ],
            }
    result = {
        "benchmark": "audit_embedded",
        "description": __doc__.strip().splitlines()[0],
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "seed": args.seed,
        "settings": {"n_generations": args.n_generations, "max_new_tokens": args.max_new_tokens},
        "runs": runs,
        "elapsed_seconds": round(time.time() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    domains = list(runs[PROMPTS[0]]["estimate"])
    print(f"\n{'domain':<14}" + "".join(f"{p + ' (%)':>22}" for p in PROMPTS))
    for d in domains:
        cells = ""
        for p in PROMPTS:
            r = runs[p]
            cells += f"{100 * r['estimate'][d]:>8.1f} [{100 * r['interval_low'][d]:4.1f}, {100 * r['interval_high'][d]:4.1f}]"
        print(f"{d:<14}{cells}")
    for p in PROMPTS:
        diag = runs[p]["diagnostics"]
        print(
            f"{p}: out-of-taxonomy score {diag['out_of_taxonomy_score']:.3f}, {len(diag['warnings'])} warning(s)"
        )
    print(f"wrote {args.output} in {result['elapsed_seconds']} s")


if __name__ == "__main__":
    main()
