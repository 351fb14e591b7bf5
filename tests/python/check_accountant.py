"""Checks halo's RDP accountant against Google's dp-accounting package (its RdpAccountant, at its default orders).

Usage: check_accountant.py CASES.json
CASES.json is a list of objects written by tests/tests/privacy_accountant.rs: a case has `delta`, `epsilon`
(halo's), and `events`: each {"kind": "poisson_gaussian", "q", "sigma", "count"} or {"kind": "gaussian",
"sigma", "count"}, composed in order. Every case must agree within 1% (or 1e-6 absolute near zero).
Prints one line per case and `ok` at the end; exits non-zero on a disagreement.
"""

import json
import logging
import sys

import dp_accounting
from dp_accounting.rdp import RdpAccountant

# dp-accounting warns (through absl) for each fractional order whose series it gives up; not our concern here.
logging.getLogger("absl").setLevel(logging.ERROR)


def reference_epsilon(case):
    accountant = RdpAccountant()
    for event in case["events"]:
        gaussian = dp_accounting.GaussianDpEvent(event["sigma"])
        if event["kind"] == "poisson_gaussian":
            accountant.compose(dp_accounting.PoissonSampledDpEvent(event["q"], gaussian), event["count"])
        elif event["kind"] == "gaussian":
            accountant.compose(gaussian, event["count"])
        else:
            raise ValueError(f"unknown event kind {event['kind']!r}")
    return accountant.get_epsilon(case["delta"])


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    failures = 0
    worst = 0.0
    for case in cases:
        ours, theirs = case["epsilon"], reference_epsilon(case)
        relative = abs(ours - theirs) / theirs if theirs > 0 else abs(ours - theirs)
        agree = abs(ours - theirs) <= 1e-6 or relative <= 0.01
        worst = max(worst, relative if theirs > 1e-6 else 0.0)
        failures += not agree
        print(f"{'' if agree else 'MISMATCH '}{json.dumps(case['events'])} delta={case['delta']:g}: "
              f"halo {ours:.6g}, dp-accounting {theirs:.6g}, relative difference {relative:.2e}")
    print(f"{len(cases)} cases, worst relative difference {worst:.2e}, {failures} beyond 1%")
    if failures:
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
