"""The peer systems the benchmarks run beside zmqkit (bench/plot.py, bench/durable_vs_rabbitmq.py):
NATS (nats-server) and RabbitMQ (rabbitmq-server) as processes started on free loopback ports with
private state in a temporary directory and stopped by PID, and their clients (bench/peers, Go), built
offline from Debian's Go packages. A peer that cannot be built or started keeps the reason in why_not."""
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%s, %d cores, %s %s, load average %.1f" % (
        model, os.cpu_count() or 0, platform.system(), platform.release(), os.getloadavg()[0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, seconds):
    """Returns: "" once 127.0.0.1:port accepts, else why not (proc died or the deadline passed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited with status %d" % proc.returncode
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return ""
        except OSError:
            time.sleep(0.2)
    return "not listening after %d s" % seconds


def stop(proc, seconds=20):
    """Ends a process this script started, with the process group it leads, politely first."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def go_build(tags, out):
    """Builds the bench/peers client for `tags`; returns "" or why it could not."""
    if not shutil.which("go"):
        return "golang-go missing"
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off",
               GOCACHE=os.path.join(os.path.dirname(out), "gocache"))
    r = subprocess.run(["go", "build", "-tags", tags, "-o", out, "./bench/peers"],  # GOPATH mode: relative
                       cwd=ROOT, env=env, capture_output=True, text=True)
    return "" if r.returncode == 0 else "client build failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]


class Peer:
    """A peer system: its server processes and its client, or the reason it is not measured."""

    def __init__(self, name, label, peers_dir):
        self.name, self.label, self.url, self.why_not, self.procs = name, label, None, "", []
        self.client = os.path.join(peers_dir, name)

    def run(self, kind, *args):
        """The client's CSV rows for `kind` with `args` (bench/peers/driver.go), or "" if not measured."""
        if self.why_not:
            return ""
        cmd = [self.client, self.url, kind] + [str(a) for a in args]
        print("  " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:  # one failed point: say so, and measure nothing more of this peer
            self.why_not = "failed at %s %s: %s" % (kind, " ".join(cmd[3:]), r.stderr.strip()[-120:])
            print("%s: %s" % (self.name, self.why_not), flush=True)
            return ""
        return r.stdout

    def close(self):
        for p in reversed(self.procs):
            stop(p)


class Nats(Peer):
    """nats-server on a free loopback port, no state on disk."""

    def __init__(self, peers_dir):
        super().__init__("nats", "NATS", peers_dir)
        server = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.access(server, os.X_OK):
            self.why_not = "nats-server not installed"
        elif not os.path.isdir("/usr/share/gocode/src/github.com/nats-io/nats.go"):
            self.why_not = "golang-github-nats-io-go-nats-dev missing"
        else:
            self.why_not = go_build("nats", self.client)
        if self.why_not:
            return
        port = free_port()
        self.procs.append(subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port)], start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.url = "nats://127.0.0.1:%d" % port
        self.why_not = wait_for_port(port, self.procs[-1], 20)


class RabbitMQ(Peer):
    """rabbitmq-server as root straight from /usr/lib/rabbitmq/bin (Debian's wrapper would switch to
    the rabbitmq user and its /var/lib state): a unique node name, private mnesia, logs, cookie
    (HOME) and epmd, everything on loopback ports of its own."""

    BIN = "/usr/lib/rabbitmq/bin"

    def __init__(self, peers_dir, state_dir=None):
        """state_dir: where its private directory (message store included) goes; default the temp dir."""
        super().__init__("rabbitmq", "RabbitMQ", peers_dir)
        self.tmp = self.log = None
        if not os.access(os.path.join(self.BIN, "rabbitmq-server"), os.X_OK) or not shutil.which("epmd"):
            self.why_not = "rabbitmq-server not installed"
        elif not os.path.isdir("/usr/share/gocode/src/github.com/rabbitmq/amqp091-go"):
            self.why_not = "golang-github-rabbitmq-amqp091-go-dev missing"
        else:
            self.why_not = go_build("rabbitmq", self.client)
        if self.why_not:
            return
        self.tmp = tempfile.mkdtemp(prefix="zmqkit-bench-rabbitmq.", dir=state_dir)
        port, epmd_port = free_port(), free_port()
        self.node = "zmqkit-bench-%d@localhost" % os.getpid()
        self.env = dict(os.environ, HOME=self.tmp, ERL_EPMD_PORT=str(epmd_port), RABBITMQ_NODENAME=self.node,
                        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(port),
                        RABBITMQ_DIST_PORT=str(free_port()),
                        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
                        RABBITMQ_MNESIA_BASE=os.path.join(self.tmp, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.tmp, "log"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.tmp, "enabled_plugins"),
                        RABBITMQ_CONFIG_FILE=os.path.join(self.tmp, "rabbitmq"),
                        RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(self.tmp, "advanced.config"))
        # Our own epmd, so that stopping it stops nothing of anyone else's.
        self.procs.append(subprocess.Popen(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"],
                                           start_new_session=True, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        self.why_not = wait_for_port(epmd_port, self.procs[-1], 10)
        if self.why_not:
            return
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.procs.append(subprocess.Popen([os.path.join(self.BIN, "rabbitmq-server")], cwd=self.tmp, env=self.env,
                                           start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT))
        self.url = "amqp://guest:guest@127.0.0.1:%d/" % port
        self.why_not = wait_for_port(port, self.procs[-1], 90)
        if self.why_not:  # its temporary directory goes at close(): keep the broker's last word
            self.why_not += ": " + (open(self.log.name).read().strip().splitlines() or ["no output"])[-1][-120:]

    def close(self):
        if len(self.procs) == 2 and self.procs[1].poll() is None:  # the broker halts itself cleanly
            subprocess.run([os.path.join(self.BIN, "rabbitmqctl"), "-n", self.node, "stop"], env=self.env,
                           capture_output=True, timeout=60)
        super().close()
        if self.log:
            self.log.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
