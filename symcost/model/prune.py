"""Decode steps skip what only fills a cache once: an encoder, and the cross-attention projections of its output.

Under `--phase decode`, `cache(x, once=true)` reads entries written at prefill and does not read x. An op is run
by a decode step only if the step's results need it: the results are the ops that write a new tensor nothing
reads (the logits), and an op is needed when a needed op reads a storage it writes — a loop-carried tensor stands
for its first value and the body's output, a loop's result for the body's output. Everything else (the encoder
layers, the key and value projections over the encoder output) belongs to the prefill and is dropped from the
decode graph. Its parameters stay: the model still holds them.
"""
from __future__ import annotations


def prune_for_decode(graph) -> None:
    """Drop, in place, the ops of a decode graph that only feed caches read as they are (see the module doc)."""
    if not any(op.from_cache for op in graph.ops):
        return
    producers: dict[int, list] = {}
    readers: dict[int, list] = {}  # every op reading a storage (a cache read as it is included: x is consumed)
    for op in graph.ops:
        for t in op.outputs:
            producers.setdefault(t.storage, []).append(op)
        for t in op.inputs:
            if not t.is_param:
                readers.setdefault(t.storage, []).append(op)
    stands_for: dict[int, list] = {}  # a loop's carried tensor and result -> the storages they are
    for f in graph.families:
        stands_for.setdefault(f.carried, []).extend((f.init, f.body_out))
        stands_for.setdefault(f.final, []).append(f.body_out)
    seen_as: dict[int, list] = {}
    for alias, bases in stands_for.items():
        for base in bases:
            seen_as.setdefault(base, []).append(alias)

    def read(sid: int, seen: set) -> bool:
        if readers.get(sid):
            return True
        seen.add(sid)
        return any(read(a, seen) for a in seen_as.get(sid, ()) if a not in seen)

    def is_view(op) -> bool:
        inputs = {t.storage for t in op.inputs}
        return all(t.storage in inputs for t in op.outputs)

    needed = {id(op) for op in graph.ops if not is_view(op) and not any(read(t.storage, set()) for t in op.outputs)}
    work = [op for op in graph.ops if id(op) in needed]
    done: set[int] = set()
    while work:
        op = work.pop()
        if op.from_cache:
            continue
        stack = [t.storage for t in op.inputs if not t.is_param]
        while stack:
            sid = stack.pop()
            if sid in done:
                continue
            done.add(sid)
            stack.extend(stands_for.get(sid, ()))
            for p in producers.get(sid, ()):
                if id(p) not in needed:
                    needed.add(id(p))
                    work.append(p)
    graph.ops[:] = [op for op in graph.ops if id(op) in needed]
