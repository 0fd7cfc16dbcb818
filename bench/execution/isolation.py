"""Process isolation: each cell in a fresh child process, so that no cell's memory state (allocator
caches, fragmentation, a leak) or selected kernels (cuDNN autotuning, oneDNN primitive caches, torch.compile
state) affect the next, and a crash, `os._exit` or the kernel's out-of-memory killer costs that cell alone.

How: a small fork server (`python -m bench.execution.isolation`, started once per sweep) imports torch and bench
and never runs a model; each cell is a fresh `os.fork()` of it, so a child starts from the same pristine
state every time without paying for the imports again. CUDA is never initialised in the server, so a
child can use the GPU (PyTorch's advice: a forkserver or spawn, never a fork of a process that used CUDA).
The server speaks JSON lines on its stdin/stdout: a job in, the child's pid, then its exit status. The child runs `runner.run_cell` exactly as
the in-process path does and hands its `CellResult` back as JSON in a private folder; the parent writes it
into the store, so atomic writes, resume and the lock stay the parent's alone. A child that dies without a
result (a signal, `os._exit`, a segfault) becomes a failed cell whose reason says how it ended, with the
tail of its stderr as the traceback.

Extras: the child gets the parent's environment, working directory and torch thread count; modules outside
bench that registered measurements (a plugin, a test) are imported in the child too; `memory_limit_mb`
caps the child's address space (RLIMIT_AS), so a runaway cell fails with an out-of-memory error instead of
swapping a shared machine; the child dies with the sweep (PR_SET_PDEATHSIG), so a killed run leaves no
orphan timing in the background.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.core.cell import Cell
from bench.core.files import atomic_write_json
from bench.core.result import CellResult
from bench.execution.cell import run_cell
from bench.measure.registry import get_measurement, list_measurements, plugin_modules
from bench.platform.allocator import process_env
from bench.suite.schema import ISOLATION_MODES


def uses_process(mode: str, cell: Cell) -> bool:
    """`process`: every cell in a child; `none`: in the runner's own process; `auto`: a child for the cells
    that measure speed (timings are what earlier cells' state skews), in-process for the others."""
    if mode not in ISOLATION_MODES:
        raise ValueError(f"unknown isolation mode {mode!r} (use {', '.join(ISOLATION_MODES)})")
    return mode == "process" or (mode == "auto" and "speed" in cell.measure)


@dataclass
class _Job:
    cell: dict[str, Any]
    device: str
    base_dir: str | None
    artifact_dir: str | None
    out_path: str
    stderr_path: str
    cwd: str
    environ: dict[str, str]
    sys_path: list[str]
    threads: int
    plugins: list[str]
    memory_limit_mb: int | None


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when its parent (the fork server, which exits with the sweep) dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child_main(job: _Job) -> None:
    """Runs in the forked child: run one cell, write its result JSON, exit 0."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the server died before the death signal was armed
        os._exit(70)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    fd = os.open(job.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.dup2(fd, 1)  # stdout is the server's channel to the parent: nothing of the cell's may reach it
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    import faulthandler

    faulthandler.enable(file=sys.stderr)
    try:
        os.chdir(job.cwd)
        os.environ.clear()
        os.environ.update(job.environ)
        sys.path[:] = job.sys_path
        for module in job.plugins:
            importlib.import_module(module)
        torch.set_num_threads(job.threads)
        if job.memory_limit_mb:
            import resource

            limit = _vm_size() + job.memory_limit_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = run_cell(
            Cell.from_dict(job.cell),
            torch.device(job.device),
            base_dir=Path(job.base_dir) if job.base_dir else None,
            artifact_dir=Path(job.artifact_dir) if job.artifact_dir else None,
        )
        result.isolation = "process"
        atomic_write_json(Path(job.out_path), result.to_dict())
    except KeyboardInterrupt:
        os._exit(130)
    except BaseException:  # noqa: BLE001 - a child never returns into the server's loop
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)


# -- the fork server ---------------------------------------------------------------------------------------


def serve() -> None:
    """The server loop (`python -m bench.execution.isolation`): one JSON job per stdin line; for each, fork a child
    that runs it, answer {"pid": ...}, wait for it, answer {"status": ...} (waitpid's exit code, negative
    for a signal). Exits at the end of stdin, and with its parent (PR_SET_PDEATHSIG)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    for name in list_measurements():  # the imports every child would otherwise pay for
        get_measurement(name)

    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        job = _Job(**json.loads(line))
        pid = os.fork()
        if pid == 0:
            _child_main(job)  # never returns
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        out.write(json.dumps({"status": code}) + "\n")
        out.flush()


_SHARED: ForkServer | None = None


def shared_server(allocator: str | None = None) -> ForkServer:
    """This process's fork server, started on first use and reused by every sweep (it never runs a cell,
    so it stays pristine); closed at exit, and it dies with this process in any case. A sweep asking for
    another `allocator` (bench.platform.allocator: the server starts with it, so its children do) gets a new one."""
    global _SHARED
    if _SHARED is not None and _SHARED.allocator != allocator:
        _SHARED.close()
    if _SHARED is None or _SHARED.proc.poll() is not None:
        import atexit

        _SHARED = ForkServer(allocator=allocator)
        atexit.register(_SHARED.close)
    return _SHARED


class ForkServer:
    """The parent's handle on one fork server: `run(job) -> exit code`; `close()` ends it."""

    def __init__(self, extra_env: dict[str, str] | None = None, allocator: str | None = None) -> None:
        self.allocator = allocator  # None: this process's environment as it is; else process_env(allocator)
        env = (process_env(allocator) if allocator else dict(os.environ)) | (extra_env or {})
        # the working directory stays off the server's sys.path (`-P`, and not passed on), so that a `torch.py` there
        # is never imported; unless bench itself is imported from it (a checkout run in place)
        here = Path.cwd().resolve()
        own = Path(__file__).resolve().parents[2]
        paths = [p for p in sys.path if p and Path(p).is_dir() and (Path(p).resolve() != here or here == own)]
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys(paths + env.get("PYTHONPATH", "").split(os.pathsep)).keys()
        ).strip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "bench.execution.isolation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )

    def run(self, job: _Job) -> int | None:
        """Run one job in a fresh child; its exit code (negative: killed by that signal), None if the server died."""
        child = None
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None  # the server was started with both piped
        try:
            stdin.write(json.dumps(asdict(job)) + "\n")
            stdin.flush()
            first = stdout.readline()
            if not first:
                return None
            child = json.loads(first)["pid"]
            second = stdout.readline()
            return json.loads(second)["status"] if second else None
        except BrokenPipeError:
            return None
        except BaseException:  # Ctrl-C, SystemExit: the child goes with the cell it was running
            if child is not None:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.close()
            raise

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:  # always: the server was started with stdin piped
                    self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _ended_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        if -exitcode == signal.SIGKILL:
            return f"child process killed by {name} (the kernel's out-of-memory killer does this) — lower the batch size or resolution"
        return f"child process killed by {name}"
    return f"child process exited with code {exitcode} before recording a result"


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def run_cell_isolated(
    cell: Cell,
    device: torch.device,
    *,
    base_dir: Path | None = None,
    artifact_dir: Path | None = None,
    memory_limit_mb: int | None = None,
    server: ForkServer | None = None,
) -> CellResult:
    """Run one cell in a fresh child process; never raises for the cell's own fault (a crash included).
    KeyboardInterrupt in the parent kills the child and passes through. Without `server`, one is started
    for this cell alone."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="bench-cell-"))
    own = server is None
    server = server or ForkServer()
    try:
        job = _Job(
            cell=cell.to_dict(),
            device=str(device),
            base_dir=str(base_dir) if base_dir else None,
            artifact_dir=str(artifact_dir) if artifact_dir else None,
            out_path=str(folder / "result.json"),
            stderr_path=str(folder / "stderr.txt"),
            cwd=os.getcwd(),
            # this process's environment, with the allocator's variables the server started with (glibc read them then)
            environ=process_env(server.allocator) if server.allocator else dict(os.environ),
            sys_path=list(sys.path),
            threads=torch.get_num_threads(),
            plugins=plugin_modules(),
            memory_limit_mb=memory_limit_mb,
        )
        exitcode = server.run(job)
        stderr = _tail(folder / "stderr.txt", 1 << 20)
        out = folder / "result.json"
        result = None
        if exitcode == 0 and out.is_file():
            try:
                result = CellResult.from_dict(json.loads(out.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                stderr += f"\nunreadable result from the child: {exc}"
        if result is not None and result.id == cell.id:
            if stderr.strip():  # warnings the cell printed, passed on as the in-process path shows them
                sys.stderr.write(stderr)
            return result
        reason = _ended_reason(exitcode) if exitcode is not None else "the isolation server died (see stderr)"
        return CellResult(
            cell=cell,
            status="failed",
            reason=reason,
            started_at=started,
            traceback=f"child stderr (last 4000 characters):\n{stderr[-4000:]}" if stderr.strip() else None,
            duration_s=time.perf_counter() - t0,
            isolation="process",
        )
    finally:
        if own:
            server.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    serve()
