"""Several local KRaft nodes as one cluster, from the local-broker recipe (cli/broker.py's LocalKafka with a node id
and a static quorum): for the fault tests that kill partition leaders."""

from __future__ import annotations

import base64
import os
import signal
import time
import uuid
from pathlib import Path

from cli.broker import LocalKafka, default_home
from cli.detached import alive
from devkit.ports import free_port


class LocalCluster:
    """Three (or `size`) local KRaft nodes on free ports, each broker and controller, as one cluster: replication
    `size`, min.insync.replicas 2. For the fault tests that kill partition leaders; nodes can be killed with -9
    and restarted on their data."""

    def __init__(self, root: Path, size: int = 3, home: Path | None = None) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        ports = [(free_port(), free_port()) for _ in range(size)]
        voters = tuple((i + 1, controller) for i, (_, controller) in enumerate(ports))
        self.nodes = {
            i + 1: LocalKafka(
                port=port,
                controller_port=controller,
                home=home or default_home(),
                data_dir=root / f"node-{i + 1}",
                heap="512m",
                node_id=i + 1,
                voters=voters,
                cluster_id=cluster_id,
            )  # fmt: skip
            for i, (port, controller) in enumerate(ports)
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout_s: float = 180.0) -> LocalCluster:
        """Start every node at once (none is ready before a quorum of them runs)."""
        import threading

        errors: list[BaseException] = []

        def one(node: LocalKafka) -> None:
            try:
                node.start(timeout_s)
            except BaseException as exc:  # noqa: BLE001 (reported below, with the others')
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        return self

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (no controlled shutdown: its partitions' leadership moves only by election)."""
        node = self.nodes[node_id]
        pid = node.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)
        node.pid_file.unlink(missing_ok=True)

    def restart(self, node_id: int, timeout_s: float = 120.0) -> None:
        self.nodes[node_id].start(timeout_s)

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading `topic`'s `partition` now (-1: none)."""
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            for t in admin.describe_topics([topic]):
                for p in t["partitions"]:  # the Metadata response's fields, by their protocol names
                    if p["partition_index"] == partition:
                        return int(p["leader_id"])
        finally:
            admin.close()
        return -1

    def stop(self) -> None:
        """All nodes at once: one by one, the last ones wait for a quorum that has already gone."""
        import threading

        threads = [threading.Thread(target=n.stop, args=(20.0,)) for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
