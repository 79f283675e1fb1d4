"""An SSH server (paramiko, in a thread, on loopback) that logs anyone in and then stops answering at
one chosen step: a frozen VM or a wedged sshd as the grader meets it.

  mode "channel": never answers a channel open request;
  mode "exec":    opens the channel, never answers the exec request.

The stuck step blocks that connection's server thread until close(), like a peer that is gone
without the TCP connection noticing."""

import socket
import threading

import paramiko

_HOST_KEY = []


def _host_key():
    if not _HOST_KEY:
        _HOST_KEY.append(paramiko.RSAKey.generate(2048))
    return _HOST_KEY[0]


class _Stuck(paramiko.ServerInterface):
    def __init__(self, mode, release):
        self.mode, self.release = mode, release

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        if self.mode == "channel":
            self.release.wait()
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        self.release.wait()
        return False


class StuckSSHServer:
    def __init__(self, mode):
        self.mode = mode
        self.release = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.transports = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(_host_key())
            self.transports.append(t)
            self.connections += 1
            try:
                t.start_server(server=_Stuck(self.mode, self.release))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    def close(self):
        self.release.set()
        self.sock.close()
        for t in self.transports:
            t.close()
