"""Audit a model's training-data mixture from Python (what ``hff audit`` runs), then read the report.

python examples/audit_a_model.py                      # the embedded SmolLM2-135M-Instruct, ~1.5 min on 2 cores
python examples/audit_a_model.py HuggingFaceTB/SmolLM2-360M   # any Hub id or local path
"""

import sys

from hf_fundamentals.integrations.audit import AuditArguments, run_audit

args = AuditArguments(
    model=sys.argv[1] if len(sys.argv) > 1 else "embedded",
    taxonomy="offline",  # or a taxonomy YAML with Hub-dataset / file / offline-corpus sources per category
    n_generations=96,
    output_dir="audits/example",  # rerunning resumes from audits/example/generations.jsonl
)
report = run_audit(args)
estimate = report["estimates"][report["default_method"]]
for domain in report["domains"]:
    print(
        f"{domain:12s} {100 * estimate['point'][domain]:5.1f}%  "
        f"[{100 * estimate['ci_low'][domain]:5.1f}, {100 * estimate['ci_high'][domain]:5.1f}]"
    )
for warning in report["diagnostics"]["warnings"]:
    print("warning:", warning)
print("files:", report["files"])
