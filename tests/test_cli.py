import subprocess
import sys

from logguardian.cli import main
from logguardian.commands.bench import available


def test_every_subcommand_has_its_module() -> None:
    """DESIGN §5: serve, demo, mine, train, score, eval, bench all dispatch somewhere."""
    out = subprocess.run(
        [sys.executable, "-m", "logguardian.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("serve", "demo", "mine", "train", "score", "eval", "bench"):
        assert name in out
        __import__(f"logguardian.commands.{name}")


def test_bench_lists_benchmarks_and_rejects_unknown(capsys) -> None:  # type: ignore[no-untyped-def]
    assert {"mine", "ingest", "scenarios", "hdfs", "exporters", "grpc"} <= set(available())
    assert main(["bench", "no-such-bench"]) == 2
    assert "available: " in capsys.readouterr().err
