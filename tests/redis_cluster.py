"""A real Redis Cluster for the tests: three primaries and three replicas, each a
redis-server subprocess on a free 127.0.0.1 port (its cluster bus on port + 10000),
each in a directory of its own under a temporary one, with no password (loopback
only, private to a test run).

The cluster is built by hand, with nothing but the server: slots assigned with
CLUSTER ADDSLOTSRANGE, distinct config epochs, CLUSTER MEET, CLUSTER REPLICATE.
Every wait is on a condition (cluster_state:ok on every node, every node's view of
the cluster the same, each replica's master_link_status:up), bounded by WAIT_S
(generous: CI machines are loaded), never a sleep assumed long enough.

The faults the livesell tests need are real ones: `kill_primary` SIGKILLs a
primary and `wait_for_failover` waits for its replica to take over;
`restart_node` brings a killed node back (it rejoins, as a replica once its
replica took over); `move_slot` reshards one slot live (IMPORTING / MIGRATING,
MIGRATE in batches, SETSLOT NODE), safe while clients write keys of that slot, and
`move_slot_slowly` leaves time between batches for clients to be redirected with
ASK mid-migration.

Every method blocks. From async code run it with `asyncio.to_thread`: that is safe,
because the nodes are spawned by the cluster's own long-lived thread, and each node
is asked by the kernel to end when that thread ends (PR_SET_PDEATHSIG), so a killed
test run leaves no redis-server behind. `async with RedisCluster(...)` starts and
stops it off the event loop.

Fixtures (import both into a conftest or a test module to use them):
  - `redis_cluster_module`: one cluster per test module (started once, stopped after
    the module's last test);
  - `redis_cluster`: that cluster, healthy for each test: nodes a previous test
    killed are restarted, slots it left half-moved are made stable, every node's
    data is flushed; a cluster that cannot be made healthy is started afresh.
Both skip their tests when the redis-server found is older than 7 (the cluster
tests need sharded pub/sub): .ci/run installs Debian's redis-server 7.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import pytest
import redis
import redis.asyncio.cluster
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.retry import Retry

from server.state.redis_process import RedisStartError, die_with_parent_preexec, find_redis_server

MIN_MAJOR: Final = 7
SLOTS: Final = REDIS_CLUSTER_HASH_SLOTS
HOST: Final = "127.0.0.1"
BUS_OFFSET: Final = 10000
# Every wait on the cluster (startup, failover, a node's rejoin, a slot's move):
# generous, it is a bound, not a delay.
WAIT_S: Final = 60.0
POLL_S: Final = 0.05
# Failure detection: a primary unreachable this long is suspected, then failed by
# the others' majority, then its replica is elected. Short so failover takes a few
# seconds; long enough that a loaded CI machine's stall does not fail a node over.
NODE_TIMEOUT_MS: Final = 1000
NODE_START_WAIT_S: Final = 30.0
STOP_TERM_WAIT_S: Final = 10.0
STOP_KILL_WAIT_S: Final = 5.0
MIGRATE_TIMEOUT_MS: Final = 10000
MOVE_TIMEOUT_S: Final = 120.0
PORT_ATTEMPTS: Final = 500
START_ATTEMPTS: Final = 5
MAX_MIGRATE_STEPS: Final = 100_000
_VERSION = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")

Role = Literal["primary", "replica"]


class ClusterError(RuntimeError):
    """The cluster did not reach a state in time, or a helper was misused."""


# ---------------------------------------------------------------- the binary


def redis_server_version(binary: str) -> tuple[int, int, int]:
    """The version `binary --version` prints (`v=7.0.15`)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         timeout=30, check=False)
    found = _VERSION.search(out.stdout + out.stderr)
    if found is None:
        raise ClusterError(f"{binary} --version printed no version: {out.stdout!r}")
    return int(found[1]), int(found[2]), int(found[3])


def cluster_binary() -> tuple[str | None, str]:
    """(the redis-server the embedded default finds, "") when it is Redis 7 or newer,
    else (None, why not)."""
    try:
        binary = find_redis_server()
    except RedisStartError as exc:
        return None, f"Redis Cluster tests need redis-server >= {MIN_MAJOR}: {exc}"
    version = redis_server_version(binary)
    if version[0] < MIN_MAJOR:
        return None, (f"Redis Cluster tests need redis-server >= {MIN_MAJOR} (sharded "
                      f"pub/sub); {binary} is {'.'.join(map(str, version))}: install "
                      "Debian's redis-server (.ci/run does)")
    return binary, ""


def require_cluster_binary() -> str:
    """The redis-server to build the cluster with, or skip the calling test with the
    reason when it is missing or older than Redis 7."""
    binary, why = cluster_binary()
    if binary is None:
        pytest.skip(why)
    return binary


# ---------------------------------------------------------------- ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(taken: set[int]) -> int:
    """A port P with P and P + 10000 (its cluster bus) free on 127.0.0.1 and out of
    `taken`. Outside the kernel's ephemeral range when there is room, so an outgoing
    connection's port never takes a node's port while the node is down."""
    low, high = _ephemeral_range()
    everything = range(1024, 65536 - BUS_OFFSET)
    quiet = [p for p in range(10000, 65536 - BUS_OFFSET)
             if not (low <= p <= high or low <= p + BUS_OFFSET <= high)]
    candidates: range | list[int] = quiet if len(quiet) > 1000 else everything
    rng = random.Random()
    for _ in range(PORT_ATTEMPTS):
        port = rng.choice(candidates)
        if {port, port + BUS_OFFSET} & taken:
            continue
        if bindable(port) and bindable(port + BUS_OFFSET):
            return port
    raise ClusterError(f"no free port pair (P, P+{BUS_OFFSET}) on {HOST} "
                       f"after {PORT_ATTEMPTS} tries")


# ---------------------------------------------------------------- CLUSTER NODES


@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES: what one node believes about one node."""
    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: frozenset[int]
    # Slots this node (the `myself` line only) migrates or imports: slot -> node id.
    migrating: dict[int, str] = field(default_factory=dict, compare=False)
    importing: dict[int, str] = field(default_factory=dict, compare=False)

    @property
    def role(self) -> Role:
        return "primary" if "master" in self.flags else "replica"

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str) -> dict[str, NodeLine]:
    """CLUSTER NODES' reply by node id."""
    lines: dict[str, NodeLine] = {}
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        slots: set[int] = set()
        migrating: dict[int, str] = {}
        importing: dict[int, str] = {}
        for token in parts[8:]:
            if token.startswith("["):
                body = token.strip("[]")
                if "->-" in body:
                    slot, peer = body.split("->-", 1)
                    migrating[int(slot)] = peer
                elif "-<-" in body:
                    slot, peer = body.split("-<-", 1)
                    importing[int(slot)] = peer
            elif "-" in token:
                first, last = token.split("-", 1)
                slots.update(range(int(first), int(last) + 1))
            else:
                slots.add(int(token))
        lines[parts[0]] = NodeLine(
            node_id=parts[0], port=port, flags=frozenset(parts[2].split(",")),
            master_id=None if parts[3] == "-" else parts[3],
            connected=parts[7] == "connected", slots=frozenset(slots),
            migrating=migrating, importing=importing)
    return lines


def parse_info(text: str) -> dict[str, str]:
    """An INFO or CLUSTER INFO reply as a dict."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            name, value = line.split(":", 1)
            info[name.strip()] = value.strip()
    return info


def _ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


# ---------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class NodeInfo:
    """A node as the cluster sees it now."""
    port: int
    node_id: str
    role: Role
    # The primary a replica replicates (None for a primary).
    master_id: str | None
    alive: bool
    # The slots the node serves, as ranges (a primary's; empty for a replica).
    slots: tuple[tuple[int, int], ...]


@dataclass
class _Node:
    port: int
    directory: Path
    node_id: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class _Killed:
    node_id: str
    slots: frozenset[int]
    replica_ports: tuple[int, ...]


class RedisCluster:
    """A 3-primary + 3-replica Redis Cluster on loopback (see the module's docstring).

    `root`: the folder its nodes' folders go in (made when missing, never removed);
    without one a temporary folder is made, and removed by `stop()`."""

    def __init__(self, root: Path | None = None, *, binary: str | None = None,
                 primaries: int = 3, replicas_per_primary: int = 1,
                 node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        if primaries < 3:
            raise ValueError("a Redis Cluster needs 3 primaries or more to fail over")
        self.binary = binary if binary is not None else require_cluster_binary()
        self.primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="livesell-rcluster-")) if root is None \
            else root
        self._generation = 0
        self._nodes: dict[int, _Node] = {}
        self._clients: dict[int, redis.Redis] = {}
        self._killed: dict[int, _Killed] = {}
        self._spawner: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        """Start the nodes and build the cluster; returns once it is healthy
        (`wait_healthy`). A failed start stops whatever it started."""
        if self._nodes:
            raise ClusterError("already started")
        self._generation += 1
        self._spawner = ThreadPoolExecutor(max_workers=1,
                                           thread_name_prefix="redis-cluster-spawner")
        try:
            self._start_nodes()
            self._build()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node this cluster started: SIGTERM, then SIGKILL past a bounded
        wait. Removes the temporary folder when the cluster made it."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        procs = [n.proc for n in self._nodes.values() if n.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TERM_WAIT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_KILL_WAIT_S)
        self._nodes.clear()
        self._killed.clear()
        if self._spawner is not None:
            self._spawner.shutdown(wait=True)
            self._spawner = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def pids(self) -> list[int]:
        """The process ids of the nodes running now."""
        return [n.proc.pid for n in self._nodes.values() if n.proc is not None and n.alive]

    def pid_of(self, port: int) -> int:
        """The process id of the node on `port` (for a test's own signals: SIGSTOP a
        replica, SIGCONT it)."""
        node = self._node(port)
        if node.proc is None or not node.alive:
            raise ClusterError(f"node {port} is not running")
        return node.proc.pid

    # ------------------------------------------------------------ processes

    def _node_dir(self, port: int) -> Path:
        return self.root / f"gen{self._generation}" / f"node-{port}"

    def _argv(self, node: _Node) -> list[str]:
        return [
            self.binary,
            "--port", str(node.port), "--bind", HOST, "--protected-mode", "yes",
            "--dir", str(node.directory), "--logfile", str(node.directory / "redis.log"),
            "--daemonize", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{node.port}.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica takes over however long ago it last heard from its primary
            # (the primary was SIGKILLed: what it has is all there is).
            "--cluster-replica-validity-factor", "0",
            # The topology stays the one the tests built: no replica moves to an
            # orphaned primary behind their back.
            "--cluster-allow-replica-migration", "no",
            "--cluster-require-full-coverage", "yes",
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            # A replica's first sync starts at once (the default waits 5 s for others).
            "--repl-diskless-sync-delay", "0",
            # SIGTERM stops at once: a primary does not wait up to 10 s for replicas
            # that are being stopped too.
            "--shutdown-timeout", "0",
        ]

    def _spawn(self, node: _Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        spawner = self._spawner
        if spawner is None:
            raise ClusterError("not started")
        argv = self._argv(node)
        with (node.directory / "stdout.log").open("ab") as out:
            # Spawned by the cluster's own thread: PR_SET_PDEATHSIG ends the node when
            # the thread that forked it ends, and that one lives as long as the cluster.
            node.proc = spawner.submit(
                subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=node.directory,
                preexec_fn=die_with_parent_preexec()).result(timeout=NODE_START_WAIT_S)

    def _wait_answering(self, node: _Node) -> bool:
        """Until the node answers PING; False when its process exited first."""
        deadline = time.monotonic() + NODE_START_WAIT_S
        for _ in range(int(NODE_START_WAIT_S / POLL_S) + 1):
            if not node.alive:
                return False
            with contextlib.suppress(redis.RedisError, OSError):
                if self._client(node.port).ping():
                    return True
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        raise ClusterError(f"node {node.port} did not answer within {NODE_START_WAIT_S} s: "
                           f"{self.log_tail(node.port)}")

    def _start_nodes(self) -> None:
        taken: set[int] = set()
        for _ in range(self.primaries * (1 + self.replicas_per_primary)):
            for attempt in range(START_ATTEMPTS):
                port = pick_port(taken)
                node = _Node(port, self._node_dir(port))
                self._spawn(node)
                if self._wait_answering(node):
                    break
                # Someone took the port between the check and the bind: another one.
                self._drop_client(port)
                if attempt == START_ATTEMPTS - 1:
                    raise ClusterError(f"redis-server did not start: {self.log_tail(port)}")
            taken.update((port, port + BUS_OFFSET))
            self._nodes[port] = node
        for node in self._nodes.values():
            node.node_id = str(self._command(node.port, "CLUSTER", "MYID"))

    def _build(self) -> None:
        ports = list(self._nodes)
        primaries, replicas = ports[:self.primaries], ports[self.primaries:]
        for i, port in enumerate(primaries):
            first = i * SLOTS // self.primaries
            last = (i + 1) * SLOTS // self.primaries - 1
            self._command(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
        # Distinct config epochs before they meet: no epoch collision to resolve.
        for epoch, port in enumerate(ports, start=1):
            self._command(port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for port in ports[1:]:
            self._command(port, "CLUSTER", "MEET", HOST, ports[0])
        self._wait("the nodes to meet", self._all_known, WAIT_S)
        for i, port in enumerate(replicas):
            primary = self._nodes[primaries[i % self.primaries]]
            self._command(port, "CLUSTER", "REPLICATE", primary.node_id)

    def _all_known(self) -> str | None:
        ids = {n.node_id for n in self._nodes.values()}
        for port in self._alive_ports():
            view = self.view(port)
            if set(view) != ids:
                return f"node {port} knows {len(view)} of {len(ids)} nodes"
            for line in view.values():
                if line.failed or not line.connected:
                    return f"node {port} sees {line.port} as {sorted(line.flags)}"
        return None

    def log_tail(self, port: int, chars: int = 2000) -> str:
        node = self._nodes.get(port)
        directory = node.directory if node is not None else self._node_dir(port)
        with contextlib.suppress(OSError):
            return (directory / "redis.log").read_text(errors="replace")[-chars:]
        return ""

    # ------------------------------------------------------------ talking to nodes

    def _client(self, port: int) -> redis.Redis:
        client = self._clients.get(port)
        if client is None:
            # No retries: a node that does not answer is a state the waits look at.
            client = redis.Redis(host=HOST, port=port, decode_responses=True,
                                 socket_timeout=15, socket_connect_timeout=2,
                                 retry=Retry(NoBackoff(), 0))
            self._clients[port] = client
        return client

    def _drop_client(self, port: int) -> None:
        client = self._clients.pop(port, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _command(self, port: int, *args: str | int) -> Any:
        """One command to one node (the command's name as separate words, so
        redis-py applies no reply callback: the reply as the node sent it)."""
        return self._client(port).execute_command(*args)  # type: ignore[no-untyped-call]

    def client(self, port: int) -> redis.Redis:
        """A plain (not cluster-aware) client of the node on `port`, decoding replies.
        Owned by the cluster: do not close it."""
        if port not in self._nodes:
            raise ClusterError(f"no node on port {port}")
        return self._client(port)

    def view(self, port: int) -> dict[str, NodeLine]:
        """CLUSTER NODES as the node on `port` sees the cluster, by node id."""
        return parse_cluster_nodes(str(self._command(port, "CLUSTER", "NODES")))

    def myself(self, port: int) -> NodeLine:
        """The node's own line of CLUSTER NODES (its role, slots, migrations)."""
        for line in self.view(port).values():
            if "myself" in line.flags:
                return line
        raise ClusterError(f"node {port}: no `myself` line in CLUSTER NODES")

    def cluster_info(self, port: int) -> dict[str, str]:
        return parse_info(str(self._command(port, "CLUSTER", "INFO")))

    def _alive_ports(self) -> list[int]:
        return [p for p, n in self._nodes.items() if n.alive]

    def _node(self, port: int) -> _Node:
        node = self._nodes.get(port)
        if node is None:
            raise ClusterError(f"no node on port {port}")
        return node

    def _port_of(self, node_id: str) -> int:
        for node in self._nodes.values():
            if node.node_id == node_id:
                return node.port
        raise ClusterError(f"no node with id {node_id}")

    # ------------------------------------------------------------ what the cluster is

    @property
    def ports(self) -> list[int]:
        """Every node's port, running or not."""
        return list(self._nodes)

    @property
    def startup_ports(self) -> list[int]:
        """The ports of the nodes running now (a cluster client's startup nodes)."""
        return self._alive_ports()

    @property
    def port(self) -> int:
        """The port of a running primary."""
        for port in self._alive_ports():
            with contextlib.suppress(redis.RedisError, OSError):
                if self.myself(port).role == "primary":
                    return port
        raise ClusterError("no primary answers")

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT of a running primary: a cluster client's startup
        node (it discovers the others)."""
        return f"redis://{HOST}:{self.port}"

    @property
    def nodes(self) -> list[NodeInfo]:
        """Every node, by port: a running node as it sees itself, a stopped one as
        the running ones see it."""
        out: list[NodeInfo] = []
        others: dict[str, NodeLine] = {}
        for port in self._alive_ports():
            with contextlib.suppress(redis.RedisError, OSError):
                others.update(self.view(port))
                break
        for port, node in sorted(self._nodes.items()):
            line: NodeLine | None = None
            if node.alive:
                with contextlib.suppress(redis.RedisError, OSError):
                    line = self.myself(port)
            if line is None:
                line = others.get(node.node_id)
            if line is None:
                raise ClusterError(f"no running node knows node {port}")
            out.append(NodeInfo(port=port, node_id=node.node_id, role=line.role,
                                master_id=line.master_id, alive=node.alive,
                                slots=tuple(_ranges(line.slots))))
        return out

    def node_id(self, port: int) -> str:
        return self._node(port).node_id

    def primaries_ports(self) -> list[int]:
        """The running primaries' ports (each as it sees itself)."""
        return [n.port for n in self.nodes if n.alive and n.role == "primary"]

    def replicas_of(self, port: int) -> list[int]:
        """The ports of the replicas of the primary on `port`, as the primary sees them
        (or, when it is down, the first running node that answers): a replica that
        does not answer (SIGSTOPped by a test) is not asked."""
        node_id = self.node_id(port)
        askable = [port] if self._nodes[port].alive else []
        askable += [p for p in self._alive_ports() if p != port]
        for asked in askable:
            with contextlib.suppress(redis.RedisError, OSError):
                view = self.view(asked)
                return sorted(line.port for line in view.values()
                              if line.role == "replica" and line.master_id == node_id)
        raise ClusterError("no running node answers")

    def _owner_views(self, slot: int) -> dict[int, str | None]:
        """Each running node's idea of which node id serves `slot`."""
        owners: dict[int, str | None] = {}
        for port in self._alive_ports():
            owner = None
            for line in self.view(port).values():
                if slot in line.slots and line.role == "primary":
                    owner = line.node_id
            owners[port] = owner
        return owners

    def primary_for_slot(self, slot: int, timeout_s: float = WAIT_S) -> int:
        """The port of the primary serving `slot`, once every running node agrees on
        it and it runs (waits, bounded, while they do not)."""
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot {slot} is not in 0..{SLOTS - 1}")
        found: list[int] = []

        def agreed() -> str | None:
            owners = self._owner_views(slot)
            ids = set(owners.values())
            if len(ids) != 1 or None in ids:
                return f"the nodes disagree on slot {slot}'s owner: {owners}"
            port = self._port_of(str(ids.pop()))
            if not self._nodes[port].alive:
                return f"slot {slot}'s owner {port} is down"
            found[:] = [port]
            return None

        self._wait(f"an owner of slot {slot}", agreed, timeout_s)
        return found[0]

    def primary_for_key(self, key: str | bytes) -> int:
        """The port of the primary serving `key` (its hash tag's slot)."""
        return self.primary_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    # ------------------------------------------------------------ health

    def _wait(self, what: str, check: Callable[[], str | None], timeout_s: float) -> None:
        """Poll `check` (None: done; else why not) until done, at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        why = "not checked"
        for _ in range(int(timeout_s / POLL_S) + 2):
            try:
                answer = check()
            except (redis.RedisError, OSError) as exc:
                answer = f"{type(exc).__name__}: {exc}"
            if answer is None:
                return
            why = answer
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        raise ClusterError(f"waiting for {what}: not within {timeout_s} s: {why}")

    def health_problem(self) -> str | None:
        """None when the cluster is healthy, else what is wrong: every running node
        says cluster_state:ok with all slots served, every running node's view of the
        roles and slots is the same and shows every running node reachable, and
        every running replica's link to its primary is up and synced."""
        alive = self._alive_ports()
        if not alive:
            return "no node runs"
        alive_ids = {self._nodes[p].node_id for p in alive}
        reference: dict[str, tuple[Role, str | None, frozenset[int]]] | None = None
        for port in alive:
            info = self.cluster_info(port)
            if info.get("cluster_state") != "ok":
                return f"node {port}: cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_ok") != str(SLOTS):
                return f"node {port}: cluster_slots_ok:{info.get('cluster_slots_ok')}"
            view = self.view(port)
            for node_id in alive_ids:
                line = view.get(node_id)
                if line is None:
                    return f"node {port} does not know node {self._port_of(node_id)}"
                if line.failed or not line.connected:
                    return (f"node {port} sees node {line.port} as {sorted(line.flags)}, "
                            f"{'connected' if line.connected else 'disconnected'}")
            mine = view[self._nodes[port].node_id]
            if mine.migrating or mine.importing:
                return f"node {port} migrates or imports slots"
            roles = {i: (v.role, v.master_id, v.slots) for i, v in view.items()
                     if i in alive_ids or v.slots}
            if reference is None:
                reference = roles
            elif roles != reference:
                return f"node {port}'s view of roles and slots differs from node {alive[0]}'s"
            if mine.role == "replica":
                repl = {k: str(v) for k, v in self._client(port).info("replication").items()}
                if repl.get("master_link_status") != "up":
                    return f"replica {port}: master_link_status:{repl.get('master_link_status')}"
                if repl.get("master_sync_in_progress") != "0":
                    return f"replica {port}: still syncing"
        return None

    def wait_healthy(self, timeout_s: float = WAIT_S) -> None:
        """Until `health_problem()` finds nothing (bounded)."""
        self._wait("a healthy cluster", self.health_problem, timeout_s)

    # ------------------------------------------------------------ faults

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on `port` (a crash: no shutdown, no last AOF flush)."""
        node = self._node(port)
        if node.proc is None or not node.alive:
            raise ClusterError(f"node {port} is not running")
        node.proc.kill()
        node.proc.wait(timeout=STOP_KILL_WAIT_S)
        self._drop_client(port)

    def kill_primary(self, port: int) -> None:
        """SIGKILL the primary on `port`, remembering its slots and replicas for
        `wait_for_failover`."""
        me = self.myself(port)
        if me.role != "primary" or not me.slots:
            raise ClusterError(f"node {port} is not a primary serving slots")
        replicas = tuple(self.replicas_of(port))
        if not replicas:
            raise ClusterError(f"primary {port} has no replica to fail over to")
        self._killed[port] = _Killed(me.node_id, me.slots, replicas)
        self.kill_node(port)

    def wait_for_failover(self, old_primary_port: int, timeout_s: float = WAIT_S) -> int:
        """Until a replica of the killed primary serves all its slots, as every running
        node sees it, and every running node says cluster_state:ok; returns the new
        primary's port."""
        killed = self._killed.get(old_primary_port)
        if killed is None:
            raise ClusterError(f"{old_primary_port} was not killed with kill_primary()")
        if self._nodes[old_primary_port].alive:
            raise ClusterError(f"node {old_primary_port} runs again")
        found: list[int] = []

        def promoted() -> str | None:
            new = None
            for port in killed.replica_ports:
                if not self._nodes[port].alive:
                    continue
                me = self.myself(port)
                if me.role == "primary" and killed.slots <= me.slots:
                    new = port
            if new is None:
                return f"no replica of {old_primary_port} serves its slots yet"
            new_id = self._nodes[new].node_id
            for port in self._alive_ports():
                info = self.cluster_info(port)
                if info.get("cluster_state") != "ok":
                    return f"node {port}: cluster_state:{info.get('cluster_state')}"
                line = self.view(port).get(new_id)
                if line is None or not killed.slots <= line.slots:
                    return f"node {port} does not see {new} serving the slots yet"
            found[:] = [new]
            return None

        self._wait(f"a replica of {old_primary_port} to take over", promoted, timeout_s)
        return found[0]

    def restart_node(self, port: int, timeout_s: float = WAIT_S) -> None:
        """Start the stopped node on `port` again, with its files (node id, AOF), and
        wait until the cluster is healthy with it: a primary that was failed over
        rejoins as a replica of the node that took over."""
        node = self._node(port)
        if node.alive:
            raise ClusterError(f"node {port} is running")
        self._drop_client(port)
        self._spawn(node)
        if not self._wait_answering(node):
            raise ClusterError(f"node {port} exited on restart: {self.log_tail(port)}")
        node_id = str(self._command(port, "CLUSTER", "MYID"))
        if node_id != node.node_id:
            raise ClusterError(f"node {port} came back as {node_id}, not {node.node_id}")
        killed = self._killed.pop(port, None)
        if killed is not None:
            def demoted() -> str | None:
                me = self.myself(port)
                owners = [p for p in self._alive_ports() if p != port
                          and killed.slots & self.myself(p).slots]
                if owners and me.role != "replica":
                    return f"node {port} is still a primary"
                return None

            self._wait(f"node {port} to rejoin", demoted, timeout_s)
        self.wait_healthy(timeout_s)

    # ------------------------------------------------------------ resharding

    def move_slot(self, slot: int, to_port: int, *, keys_per_step: int = 100,
                  pause_s: float = 0.0, on_step: Callable[[int], None] | None = None,
                  timeout_s: float = MOVE_TIMEOUT_S) -> int:
        """Reshard `slot` live to the primary on `to_port`: IMPORTING on the target,
        MIGRATING on the source, MIGRATE of `keys_per_step` keys at a time until the
        source holds none (`on_step(keys moved so far)` and `pause_s` after each
        batch), then SETSLOT NODE on the target, the source and every other primary;
        returns once every running node sees the target serving it. Clients may
        write keys of the slot all along: a key not on the source is redirected to
        the target with ASK. Returns the source's port."""
        if keys_per_step < 1:
            raise ValueError("keys_per_step must be 1 or more")
        source = self.primary_for_slot(slot)
        if source == to_port:
            return source
        target = self._node(to_port)
        if not target.alive or self.myself(to_port).role != "primary":
            raise ClusterError(f"node {to_port} is not a running primary")
        source_id, target_id = self._nodes[source].node_id, target.node_id
        deadline = time.monotonic() + timeout_s
        self._command(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self._command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = self._migrate_keys(slot, source, to_port, keys_per_step, pause_s, on_step,
                                   deadline)
        self._command(to_port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for _ in range(MAX_MIGRATE_STEPS):
            try:
                self._command(source, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
                break
            except redis.ResponseError as exc:
                # A key written to the source after its last batch (it refuses to
                # give the slot away while it holds keys of it): move it too.
                if "hold keys" not in str(exc) or time.monotonic() >= deadline:
                    raise
                moved = self._migrate_keys(slot, source, to_port, keys_per_step, 0.0,
                                           None, deadline, moved)
        for port in self.primaries_ports():
            if port not in (source, to_port):
                self._command(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)

        def moved_everywhere() -> str | None:
            owners = self._owner_views(slot)
            wrong = {p: o for p, o in owners.items() if o != target_id}
            return f"slot {slot} owners seen: {wrong}" if wrong else None

        self._wait(f"slot {slot} to be seen on {to_port}", moved_everywhere,
                   max(1.0, deadline - time.monotonic()))
        return source

    def move_slot_slowly(self, slot: int, to_port: int, keys_per_step: int = 5,
                         pause_s: float = 0.05,
                         on_step: Callable[[int], None] | None = None) -> int:
        """`move_slot` a few keys at a time with a pause between batches: time for
        clients to meet the slot mid-migration (ASK redirections)."""
        return self.move_slot(slot, to_port, keys_per_step=keys_per_step, pause_s=pause_s,
                              on_step=on_step)

    def _migrate_keys(self, slot: int, source: int, target: int, keys_per_step: int,
                      pause_s: float, on_step: Callable[[int], None] | None,
                      deadline: float, moved: int = 0) -> int:
        for _ in range(MAX_MIGRATE_STEPS):
            keys = self._command(source, "CLUSTER", "GETKEYSINSLOT", slot, keys_per_step)
            if not keys:
                return moved
            if time.monotonic() >= deadline:
                raise ClusterError(f"slot {slot}: keys still on {source} after the move's "
                                   "time ran out")
            self._command(source, "MIGRATE", HOST, target, "", 0, MIGRATE_TIMEOUT_MS,
                          "KEYS", *keys)
            moved += len(keys)
            if on_step is not None:
                on_step(moved)
            if pause_s > 0:
                time.sleep(pause_s)
        raise ClusterError(f"slot {slot}: still keys on {source} after {MAX_MIGRATE_STEPS} "
                           "batches")

    def stabilize(self) -> None:
        """CLUSTER SETSLOT … STABLE for every slot a running primary migrates or
        imports (a move interrupted half-way)."""
        for port in self.primaries_ports():
            me = self.myself(port)
            for slot in {*me.migrating, *me.importing}:
                self._command(port, "CLUSTER", "SETSLOT", slot, "STABLE")

    def recover(self, timeout_s: float = WAIT_S) -> None:
        """Back to healthy after a test: stopped nodes started again, half-moved slots
        made stable, every primary's data flushed."""
        for port, node in self._nodes.items():
            if not node.alive:
                self.restart_node(port, timeout_s)
        self.stabilize()
        self.wait_healthy(timeout_s)
        for port in self.primaries_ports():
            self._command(port, "FLUSHALL")

    # ------------------------------------------------------------ clients

    def async_client(self, **kwargs: Any) -> redis.asyncio.cluster.RedisCluster:
        """A redis-py asyncio cluster client whose startup nodes are the running
        nodes (decoding replies unless told otherwise); the caller closes it
        (`await client.aclose()`)."""
        kwargs.setdefault("decode_responses", True)
        startup = [redis.asyncio.cluster.ClusterNode(HOST, p) for p in self._alive_ports()]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, **kwargs)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def redis_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One Redis Cluster for the test module (skips it below Redis 7)."""
    binary = require_cluster_binary()
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"), binary=binary)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_module: RedisCluster) -> RedisCluster:
    """The module's cluster, healthy and empty for this test (`RedisCluster.recover`;
    started afresh when that fails)."""
    try:
        redis_cluster_module.recover()
    except (ClusterError, redis.RedisError, OSError):
        redis_cluster_module.stop()
        redis_cluster_module.start()
    return redis_cluster_module
