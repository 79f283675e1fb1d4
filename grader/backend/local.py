"""Local backend: the self-check on a lab VM (`bpfhol check kprobes`) runs the agent here."""

import json
import os
import shutil
import subprocess
import tempfile

from ..errors import HostError
from . import FACTS_CAP, parse_reply, reply_cap

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
        work = tempfile.mkdtemp(prefix="bpfhol-")
        try:
            os.chmod(work, 0o755)
            with open(os.path.join(work, "job.json"), "w") as fh:
                json.dump(job, fh)
            for name, data in uploads.items():
                with open(os.path.join(work, name), "wb") as fh:
                    fh.write(data)
            return self._run(["run", os.path.join(work, "job.json")], timeout, reply_cap(job))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def agent_facts(self, timeout=90):
        return self._run(["facts"], timeout, FACTS_CAP)

    def connect(self):
        pass

    def close(self):
        pass
