#!/usr/bin/env python3
"""Runs the MPI test binary with one rank failing mid-pass (MODE "throw": it throws;
"hang": it stalls and the others time out; "kill": it dies by SIGKILL); passes when mpirun exits nonzero within
the bound (30 s) and the expected message was printed.

usage: expect_abort.py MPIRUN NP BINARY FAIL_RANK MODE"""
import os
import subprocess
import sys
import time

BOUND_S = 30


def main():
    mpirun, np, binary, fail_rank, mode = sys.argv[1:6]
    env = dict(os.environ, MOELAB_TEST_FAIL_RANK=fail_rank, MOELAB_TEST_FAIL_MODE=mode, MOELAB_COMM_TIMEOUT_S="5")
    expected = {"throw": "injected failure in layer 1", "hang": "did not complete within 5 s",
                "kill": "signal 9"}[mode]
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", np, binary,
           "--gtest_filter=RankFailure.*"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BOUND_S * 4)
    except subprocess.TimeoutExpired:
        print(f"FAIL: ranks still running after {BOUND_S * 4} s (hang)")
        return 1
    elapsed = time.monotonic() - start
    print(f"mpirun exit status {proc.returncode} after {elapsed:.1f} s")
    ok = proc.returncode != 0 and elapsed < BOUND_S and expected in proc.stderr + proc.stdout
    if not ok:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
