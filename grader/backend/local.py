"""Local backend: the self-check on a lab VM (`bpfhol check kprobes`) runs the agent here."""

import os
import subprocess
import threading
import time

from ..agent import AGENT_VERSION, job_bounds, job_input, ready_version
from ..errors import HostError
from . import FACTS_CAP, old_agent_problem, parse_reply, reply_cap

DEFAULT_AGENT = "/opt/bpfhol/sbin/bpfhol-agent"


class LocalBackend:
    name = "localhost"

    def __init__(self, agent=DEFAULT_AGENT):
        self.agent = agent

    def _argv(self, args):
        argv = [self.agent] + args
        return argv if os.geteuid() == 0 else ["sudo", "-n"] + argv

    def _run(self, args, timeout, cap):
        try:
            proc = subprocess.run(self._argv(args), capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise HostError("%s is not installed: re-run the lab playbook" % self.agent, kind="agent")
        except OSError as exc:
            raise HostError("cannot run %s: %s (re-run the lab playbook)" % (self.agent, exc.strerror), kind="agent")
        except subprocess.TimeoutExpired:
            raise HostError("the agent did not finish within %ds" % timeout, kind="timeout")
        if len(proc.stdout) > cap:
            raise HostError("the agent replied with more than %d bytes, more than a truthful reply needs" % cap,
                            kind="agent")
        return parse_reply(proc.stdout, proc.stderr[:65536], proc.returncode, self.name)

    def run_agent_job(self, job, uploads, timeout):
        """As the SSH backend does it: the agent takes the lock, says it is ready, then gets the job on stdin."""
        try:
            proc = subprocess.Popen(self._argv(["run", "--stdin", "--lock-wait",
                                                str(int(job_bounds(job)["lock_wait"]))]),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise HostError("%s is not installed: re-run the lab playbook" % self.agent, kind="agent")
        except OSError as exc:
            raise HostError("cannot run %s: %s (re-run the lab playbook)" % (self.agent, exc.strerror), kind="agent")
        cap = reply_cap(job)
        out, err = _Drain(proc.stdout, cap), _Drain(proc.stderr, 65536)
        deadline = time.monotonic() + timeout
        try:
            if out.first_line.wait(timeout):
                line = bytes(out.data).partition(b"\n")[0]
                version = ready_version(line) if b"\n" in out.data else None
                if version is not None and version != AGENT_VERSION:
                    raise HostError("the agent is version %s and this grader needs %d: re-run the lab playbook"
                                    % (version, AGENT_VERSION), kind="agent")
                if version is not None:
                    out.drop_first_line()
                    try:
                        proc.stdin.write(job_input(job, uploads))
                    except BrokenPipeError:
                        pass
                proc.stdin.close()
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise HostError("the agent did not finish within %ds" % timeout, kind="timeout")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.join()
            err.join()
        if out.over:
            raise HostError("the agent replied with more than %d bytes, more than a truthful reply needs" % cap,
                            kind="agent")
        reply = parse_reply(bytes(out.data), bytes(err.data), proc.returncode, self.name)
        if old_agent_problem(reply, self.name):
            raise HostError(old_agent_problem(reply, self.name), kind="agent")
        return reply

    def agent_facts(self, timeout=90):
        return self._run(["facts"], timeout, FACTS_CAP)

    def connect(self):
        pass

    def close(self):
        pass


class _Drain(threading.Thread):
    """Read a pipe to its end in a thread, keeping at most ``cap`` bytes; ``first_line`` is set at the first
    newline or the end."""

    def __init__(self, pipe, cap):
        super().__init__(daemon=True)
        self.pipe, self.cap, self.data, self.over = pipe, cap, bytearray(), False
        self.first_line = threading.Event()
        self._lock = threading.Lock()
        self.start()

    def run(self):
        while True:
            chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(65536)
            if not chunk:
                break
            with self._lock:
                self.over = self.over or len(self.data) + len(chunk) > self.cap
                self.data += chunk[: max(0, self.cap - len(self.data))]
            if b"\n" in chunk:
                self.first_line.set()
        self.first_line.set()

    def drop_first_line(self):
        with self._lock:
            del self.data[: self.data.index(b"\n") + 1]
