"""Error lines a user reads: checked locally where they can be, distinct exit codes where a
script must tell two failures apart, no ``error:`` for what the agent retries by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from nvtopo.cli import main


def test_compute_domain_delete_checks_the_name_before_any_request(capsys, tmp_path) -> None:
    absent = tmp_path / "no-kubeconfig"
    code = main(["compute-domain", "delete", "Bad Name", "--kubeconfig", str(absent)])
    err = capsys.readouterr().err
    assert code == 1
    # The name, not the missing kubeconfig: nothing was loaded or sent.
    assert err == (
        "nvtopo: error: name 'Bad Name' must be a DNS label: at most 63 lower-case letters, "
        "digits and '-', starting and ending with a letter or digit\n"
    )
    code = main(["compute-domain", "delete", "ok", "-n", "Bad_NS", "--kubeconfig", str(absent)])
    assert code == 1 and "namespace 'Bad_NS' must be a DNS label" in capsys.readouterr().err


def test_imex_check_tells_not_ready_from_unreadable(capsys, tmp_path: Path) -> None:
    from nvtopo.cli.imex import CHECK_EXIT_CODES

    assert CHECK_EXIT_CODES == {"can join": 0, "cannot join": 1, "usage": 2, "unreadable input": 3}
    assert main(["imex", "check", "-s", "system:dgx-h100", "-o", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["canJoin"] is False
    assert main(["imex", "check", "-s", f"smi-xml:{tmp_path / 'absent.xml'}"]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("nvtopo: error: ")
    bad = tmp_path / "bad.xml"
    bad.write_text("<nvidia_smi_log><gpu>")
    assert main(["imex", "check", "-s", f"smi-xml:{bad}"]) == 3
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_watch_mode_says_retrying_not_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "t", "user": {"token": "x"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    argv = [sys.executable, "-m", "nvtopo", "publish", "-s", f"file:{tmp_path / 'gone.json'}",
            "--node", "n1", "--kubeconfig", str(kubeconfig), "--interval", "1"]  # fmt: skip
    with subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    ) as agent:
        try:
            assert agent.stderr is not None
            first = agent.stderr.readline()
            second = agent.stderr.readline()  # the next wake-up: it carries on
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
    for line in (first, second):
        assert line.startswith("nvtopo: publish failed, retrying at the next wake-up: ")
        assert "error:" not in line and "gone.json: no such file" in line
    assert agent.returncode == 0
