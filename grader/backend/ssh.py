"""SSH backend: Fabric's Connection (paramiko underneath) with bounds on every step.

Why not ``Connection.run(timeout=)``: it buffers all output in memory and, on timeout,
only closes the channel.  Here every remote command reads through a capped loop with a
deadline; the agent on the host bounds and signals bpftrace itself.

paramiko waits without a deadline for a reply to an exec request and to the SFTP subsystem
request and version exchange: a frozen VM (a laptop lid closed) or an sshd that never answers held
a worker forever.  Every such step runs under a watchdog (``_deadline``) that closes the
transport when the step overruns, which wakes the waiting call.

Closing a channel does not stop the agent on the host.  So a job that was cut off (lost
connection, timeout) is remembered per host (``_stale_jobs``), and the next job on that host
first waits, within the old job's bound, until no process there still names the old job's tag.

No file of a job reaches the host before that job holds the agent's lock: the agent is started first
(``run --stdin``), takes the lock, prints its ready line, and only then is the job, scripts included, sent
on its stdin (grader/agent.py: job_input).  Uploaded before (SFTP, up to agent 5), a job's scripts passed
through sshd's write() while another job's scripts traced, and one student's script printed another's.
"""

import contextlib
import os
import secrets
import shlex
import socket
import threading
import time
from pathlib import Path

from ..agent import AGENT_VERSION, BOUND_RECEIVE, job_bounds, job_input, ready_version
from ..errors import HostError
from ..safetext import safe_text
from . import FACTS_CAP, REPLY_CAP, old_agent_problem, parse_reply, reply_cap

_known_hosts_lock = threading.Lock()
_stale_lock = threading.Lock()
_stale_jobs = {}            # (host, port) -> (job tag, cut off at, give up waiting at), time.monotonic()
STALE_MIN_WAIT = 30         # seconds a cut-off job is waited for at least, when its own bound is spent
STALE_POLL = 2


def _why(exc):
    """An exception's text for a message: it can carry the peer's words (banners, disconnect reasons)."""
    return safe_text(str(exc)).strip()[:160] or type(exc).__name__


def key_mode_problem(key):
    """Why OpenSSH would ignore the private key file ``key`` for its permissions, or "".

    OpenSSH's rule (sshkey_perm_ok): a key file owned by the user running ssh that its group or others may
    read, write or run is "UNPROTECTED" and ignored.  paramiko has no such rule, so a 0644 key (a copy under
    umask 022, a bundle unpacked by another tool) was used, while an instructor's own `ssh -i` refused it.
    The grader refuses it too, naming the fix."""
    try:
        st = os.stat(key)
    except OSError:
        return ""
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        return ("key file %s is accessible by group or others (mode %04o), so OpenSSH refuses it: run chmod 600 %s"
                % (key, st.st_mode & 0o7777, shlex.quote(str(key))))
    return ""


class _TrustOnFirstUse:
    """Unknown host: record its key in our known_hosts file.  Changed key: paramiko refuses it."""

    def __init__(self, path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.path:
            with _known_hosts_lock:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as fh:
                    fh.write("%s %s %s\n" % (hostname, key.get_name(), key.get_base64()))


def _host_label(host, port):
    return host if int(port) == 22 else "[%s]:%d" % (host, int(port))


def forget_host_key(known_hosts, host, port):
    label = _host_label(host, port)
    with _known_hosts_lock:
        try:
            lines = Path(known_hosts).read_text().splitlines()
        except FileNotFoundError:
            return
        kept = [line for line in lines if line.split(" ", 1)[0] != label]
        Path(known_hosts).write_text("".join(line + "\n" for line in kept))


class SSHBackend:
    def __init__(self, host, port=22, user="bpfhol-grader", key=None, agent="/opt/bpfhol/sbin/bpfhol-agent",
                 known_hosts=None, replace_host_keys=False, connect_timeout=10, tries=3):
        self.host, self.port, self.user, self.key = host, int(port), user, key
        self.agent = agent
        self.known_hosts = known_hosts
        self.replace_host_keys = replace_host_keys
        self.connect_timeout = connect_timeout
        self.tries = tries
        self.conn = None
        self.name = "%s@%s:%d" % (user, host, self.port)

    # -- connection -------------------------------------------------------------------------
    def connect(self):
        import paramiko
        from fabric import Connection

        if self.key and not Path(self.key).is_file():
            raise HostError("key file not found: %s (fix the roster's key column)" % self.key, kind="roster")
        if self.key and key_mode_problem(self.key):
            raise HostError(key_mode_problem(self.key), kind="roster")
        # A row with a key logs in with that key only; a row without one logs in as `ssh` would, with the
        # instructor's agent and ~/.ssh/id_* (it crashed with a TypeError in fabric before).
        auth = ({"key_filename": [self.key], "look_for_keys": False, "allow_agent": False} if self.key
                else {"look_for_keys": True, "allow_agent": True})
        last = None
        for attempt in range(1, self.tries + 1):
            conn = Connection(self.host, user=self.user, port=self.port, connect_timeout=self.connect_timeout,
                              connect_kwargs=dict(auth, banner_timeout=self.connect_timeout,
                                                  auth_timeout=self.connect_timeout,
                                                  channel_timeout=self.connect_timeout))
            if self.known_hosts:
                Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
                Path(self.known_hosts).touch(exist_ok=True)
                conn.client.load_host_keys(self.known_hosts)
            conn.client.set_missing_host_key_policy(_TrustOnFirstUse(self.known_hosts))
            try:
                # paramiko bounds TCP connect, banner, key exchange and auth; this is the backstop.
                with self._deadline("login", 4 * self.connect_timeout + 5, conn.close):
                    conn.open()
                conn.transport.set_keepalive(5)
                self.conn = conn
                return
            except paramiko.BadHostKeyException:
                conn.close()
                if self.replace_host_keys and self.known_hosts:
                    forget_host_key(self.known_hosts, self.host, self.port)
                    continue
                # The fix first: the progress line and the table cut long messages.
                raise HostError("host key changed: VM rebuilt? rerun with --replace-host-keys (%s's key differs "
                                "from the one first seen)" % self.name, kind="host_key")
            except paramiko.AuthenticationException:
                conn.close()
                raise HostError("authentication refused for %s (check the user and key in the roster)" % self.name,
                                kind="auth")
            except paramiko.SSHException as exc:
                conn.close()
                if "No authentication methods available" in str(exc):
                    # paramiko had nothing to offer (no key in the row, no agent, no ~/.ssh/id_*): retrying
                    # cannot help, and "unreachable" would send the instructor after the network.
                    raise HostError("no key to log in to %s: the roster row has no key and this machine has no "
                                    "SSH agent or ~/.ssh/id_* key (add key: PATH to the row)" % self.name,
                                    kind="auth")
                last = exc
                if attempt < self.tries:
                    time.sleep(min(2 ** attempt, 4))
            except (OSError, socket.timeout, EOFError, HostError) as exc:
                conn.close()
                last = exc
                if attempt < self.tries:
                    time.sleep(min(2 ** attempt, 4))
        raise HostError("host unreachable after %d tries: %s (%s)" % (self.tries, self.name, _why(last)),
                        kind="unreachable")

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection must never fail a student
                pass
            self.conn = None

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def _deadline(self, step, seconds, close=None):
        """Run one transport step that paramiko may wait on forever; past ``seconds`` the
        transport is closed (which wakes the waiting call) and the step is a lost connection."""
        fired = threading.Event()
        transport = self.conn.transport if close is None else None

        def expire():
            fired.set()
            try:
                # The transport, not the connection: later steps then fail at once, never reconnect.
                (close or transport.close)()
            except Exception:  # noqa: BLE001 - closing a dead connection must never fail a student
                pass

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        stalled = HostError("%s did not answer the %s within %gs (a frozen or overloaded VM, or a stuck sshd); "
                            "the connection was closed" % (self.name, step, seconds), kind="connection")
        try:
            yield
        except Exception:
            if fired.is_set():
                raise stalled from None
            raise
        finally:
            timer.cancel()
        if fired.is_set():
            raise stalled

    # -- commands ---------------------------------------------------------------------------
    def exec(self, command, timeout, cap=REPLY_CAP, raw=False, send_when_ready=None):
        """Run a command; return (exit code, stdout, stderr).  Never waits past ``timeout``.
        stdout past ``cap`` bytes is a HostError once the command ends (nothing past it is kept);
        ``raw``: stdout as the bytes received, so a large reply is not copied to decode it.
        ``send_when_ready``: bytes sent on the command's stdin (then closed) once its first line is the
        agent's ready line, which is left out of stdout; a first line of any other kind is the reply."""
        import paramiko

        if self.conn is None:
            self.connect()
        try:
            with self._deadline("channel open", self.connect_timeout):
                chan = self.conn.transport.open_session(timeout=self.connect_timeout + 5)
            chan.settimeout(0.5)
            with self._deadline("exec request", self.connect_timeout):
                chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError("connection to %s lost: %s" % (self.name, _why(exc)), kind="connection")
        out, err = bytearray(), bytearray()
        over_cap = False
        deadline = time.monotonic() + timeout
        try:
            while True:
                progressed = False
                while chan.recv_ready():
                    data = chan.recv(65536)
                    progressed = True
                    if len(out) + len(data) > cap:
                        over_cap = True
                    if len(out) < cap:
                        out += data[: cap - len(out)]
                if send_when_ready is not None and (b"\n" in out or chan.exit_status_ready()):
                    out = self._send_when_ready(chan, out, send_when_ready)
                    send_when_ready = None
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    progressed = True
                    if len(err) < 65536:
                        err += data[: 65536 - len(err)]
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed or not self.conn.transport.is_active():
                    raise HostError("connection to %s lost during the run" % self.name, kind="connection")
                if time.monotonic() > deadline:
                    raise HostError("%s did not finish within %ds" % (shlex.split(command)[0] if command else "command",
                                                                      timeout), kind="timeout")
                if not progressed:
                    time.sleep(0.05)
            status = chan.recv_exit_status()
            if status == -1:
                # No exit status: paramiko closes the channels of a dead transport (sshd killed, VM
                # rebooted) before it marks the transport inactive.  That is a lost connection, which
                # --retries covers, not an agent that "gave no reply".
                raise HostError("connection to %s lost during the run (no exit status)" % self.name,
                                kind="connection")
            if over_cap:
                raise HostError("agent on %s replied with more than %d bytes, more than a truthful reply to this "
                                "job needs: not read" % (self.name, cap), kind="agent")
            return status, (out if raw else out.decode("utf-8", "replace")), err.decode("utf-8", "replace")
        finally:
            chan.close()

    def _sudo(self, argv):
        cmd = " ".join(shlex.quote(a) for a in argv)
        return cmd if self.user == "root" else "sudo -n " + cmd

    def _send_when_ready(self, chan, out, data):
        """The agent's first line is in ``out`` (or it has exited): when it is the ready line, send the job and
        close stdin; return stdout without the ready line.  Otherwise send nothing (the line is its reply)."""
        import paramiko

        line, newline, rest = bytes(out).partition(b"\n")
        version = ready_version(line) if newline else None
        try:
            if version is not None and version != AGENT_VERSION:
                raise HostError("the agent on %s is version %s and this grader needs %d (jobs go to the agent's "
                                "stdin once it holds the lock): re-run the lab playbook" % (self.name, version,
                                                                                           AGENT_VERSION), kind="agent")
            if version is not None:
                chan.settimeout(None)
                with self._deadline("job upload", BOUND_RECEIVE):
                    chan.sendall(data)
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostError("sending the job to %s failed: %s" % (self.name, _why(exc)), kind="connection")
        finally:
            chan.settimeout(0.5)
        return bytearray(rest) if version is not None else out

    def run_agent_job(self, job, uploads, timeout):
        self._settle_stale_job()
        tag = "bpfhol-job-" + secrets.token_hex(10)
        started = time.monotonic()
        command = self._sudo([self.agent, "run", "--stdin", "--lock-wait", str(int(job_bounds(job)["lock_wait"])),
                              "--tag", tag])
        try:
            code, out, err = self.exec(command, timeout=timeout, cap=reply_cap(job), raw=True,
                                       send_when_ready=job_input(job, uploads))
        except HostError as exc:
            if exc.kind in ("connection", "timeout"):
                self._note_stale_job(tag, started + timeout)        # it may still run there
            raise
        reply = parse_reply(out, err, code, self.name, kind="run")
        old = old_agent_problem(reply, self.name)
        if old:
            raise HostError(old, kind="agent")
        return reply

    # -- jobs that were cut off ---------------------------------------------------------------
    def _note_stale_job(self, tag, bound_ends):
        """Closing our channel does not stop the agent there: remember its job for the next one."""
        now = time.monotonic()
        with _stale_lock:
            _stale_jobs[(self.host, self.port)] = (tag, now, max(bound_ends, now + STALE_MIN_WAIT))

    def _stale_job_running(self, tag):
        """True/False: does a process on the host still name the job's tag (the agent, sudo, a
        shell)?  None: cannot tell (no grep, or /proc hides other users' processes).  Judged by
        grep's output, not its status: a process that ends while grep runs is an error there.
        The bracket keeps grep from matching its own command line."""
        pattern = shlex.quote("[%s]%s" % (tag[0], tag[1:]))
        code, out, _ = self.exec("[ -r /proc/1/cmdline ] && command -v grep >/dev/null || exit 3; "
                                 "grep -ls -- %s /proc/[0-9]*/cmdline; exit 0" % pattern, timeout=20)
        return None if code != 0 else bool(out.strip())

    def _settle_stale_job(self):
        """Never start a job on a host where one we cut off may still run (both kprobemes would match
        a comm filter, and the old agent's cleanup could fire mid-run).  Wait until the old job is gone
        (or, when that cannot be told, until its bound has passed); still there after that: busy."""
        key = (self.host, self.port)
        with _stale_lock:
            stale = _stale_jobs.get(key)
        if not stale:
            return
        tag, cut_at, give_up_at = stale
        while True:
            running = self._stale_job_running(tag)
            if running is False or (running is None and time.monotonic() >= give_up_at):
                break
            if time.monotonic() >= give_up_at:
                raise HostError("host busy: a grading job cut off %ds ago still runs on %s; reboot the VM if "
                                "this lasts" % (time.monotonic() - cut_at, self.name), kind="busy")
            time.sleep(STALE_POLL)
        with _stale_lock:
            if _stale_jobs.get(key) == stale:
                del _stale_jobs[key]

    def agent_facts(self, timeout=90):
        code, out, err = self.exec(self._sudo([self.agent, "facts"]), timeout=timeout, cap=FACTS_CAP)
        return parse_reply(out, err, code, self.name)

    def collect_scripts(self, paths, timeout=60):
        """The student's scripts as they are now (the agent's ``collect``), to be graded on other VMs."""
        code, out, err = self.exec(self._sudo([self.agent, "collect", *paths]), timeout=timeout)
        return parse_reply(out, err, code, self.name, kind="collect")
