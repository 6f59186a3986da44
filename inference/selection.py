"""Which fetched frames a batch takes: newest first for live cameras, lossless for files, fair across cameras.

The loop fetches up to a look-ahead of frames; this picks at most a batch to run through the model:
- a live camera's frames (RTSP, HTTP, devices) that a newer frame of the same camera supersedes are skipped
  (committed, counted as `superseded`, never inferred): an overloaded worker works on what is happening now;
- frames of files and image folders are all processed, in order;
- the batch is shared round-robin across the cameras that have frames (each camera's newest first), so one busy
  camera cannot starve the others;
- frames in which nothing moved (no model call: inference/gating.py) are always taken, outside the batch's
  budget, and never supersede an older frame;
- per partition, what is taken is a prefix: if a file frame does not fit, it and everything after it in its
  partition are left for the next batch (offsets are committed per partition, so nothing after an unprocessed
  frame may be committed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """A fetched record, with what the choice needs: its camera and whether the source is live."""

    record: Any  # ConsumerRecord (partition, offset)
    camera: str | None  # None: undecodable (taken, so it is dead-lettered in order)
    live: bool
    free: bool = False  # nothing moved: no model call, so always taken, and it never supersedes an older frame


@dataclass
class Choice:
    infer: list[Any] = field(default_factory=list)  # records to run through the model
    superseded: list[Any] = field(default_factory=list)  # live frames skipped for newer ones (committed)
    taken: list[Any] = field(default_factory=list)  # infer + superseded + undecodable: the committed prefix
    left: list[Any] = field(default_factory=list)  # read again in a later batch


def choose(candidates: Sequence[Candidate], capacity: int) -> Choice:
    """Pick at most `capacity` frames to infer among `candidates` (in fetch order)."""
    by_partition: dict[tuple[str, int], list[Candidate]] = {}
    for c in candidates:
        by_partition.setdefault((c.record.topic, c.record.partition), []).append(c)
    for items in by_partition.values():
        items.sort(key=lambda c: c.record.offset)

    # Per camera, the frames it could contribute: live cameras newest first, files oldest first.
    queues: dict[str, list[Candidate]] = {}
    wanted: set[int] = set()
    for items in by_partition.values():
        for c in items:
            if c.free:
                wanted.add(id(c))  # costs no model time: never skipped, never counted against the batch
            elif c.camera is not None:
                queues.setdefault(c.camera, []).append(c)
    for queue in queues.values():
        if queue[0].live:
            queue.reverse()
    budget = capacity
    while budget > 0 and any(queues.values()):
        for camera in sorted(queues):  # one frame per camera per round: fair
            queue = queues[camera]
            if queue and budget > 0:
                wanted.add(id(queue.pop(0)))
                budget -= 1

    free = {id(c) for items in by_partition.values() for c in items if c.free}
    choice = Choice()
    for items in by_partition.values():
        cut = False
        for c in items:
            if cut:
                choice.left.append(c.record)
            elif c.camera is None or id(c) in wanted:
                choice.taken.append(c.record)
                if c.camera is not None:
                    choice.infer.append(c.record)
            elif c.live and _newer_taken(c, items, wanted - free):
                choice.taken.append(c.record)
                choice.superseded.append(c.record)
            else:  # a file frame (or a live frame nothing newer replaces yet) that did not fit: stop here
                cut = True
                choice.left.append(c.record)
    if not choice.taken and choice.left:
        # Every frame chosen sat behind one that did not fit: take the first frame of a partition instead, so
        # a batch always moves on.
        first = min(choice.left, key=lambda r: (r.partition, r.offset))
        choice.left.remove(first)
        choice.taken.append(first)
        choice.infer.append(first)
    return choice


def _newer_taken(c: Candidate, items: list[Candidate], wanted: set[int]) -> bool:
    """A newer frame of the same live camera in this partition is being inferred."""
    return any(o.camera == c.camera and o.record.offset > c.record.offset and id(o) in wanted for o in items)


def candidates(records: Sequence[Any], identify: Callable[[Any], tuple[str, bool, bool] | None]) -> list[Candidate]:
    """`identify(record)` gives (camera, live, free), or None for a record that does not decode."""
    out = []
    for r in records:
        who = identify(r)
        out.append(Candidate(r, None, False) if who is None else Candidate(r, *who))
    return out
