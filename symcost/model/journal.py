"""Checking a branch not taken: what building it changed, cut back or undone (snapshots and an undo journal)."""
from __future__ import annotations


class Journal:
    """A mixin of the graph builder: `_snapshot` before building something that may be thrown away, then
    `_restore` (throw it away) or `_release` (keep it). Lengths are cut back; the changes to sets and maps that
    grow with the spec are undone from a journal, so checking many `if` branches stays linear."""

    def _undo_later(self, fn, *args) -> None:
        """While a branch not taken is being checked, remember how to undo a change it makes (see _snapshot)."""
        if self._checking:
            self._undo.append((fn, args))

    def _snapshot(self):
        """What checking a branch not taken may change: lengths to cut back, the (small) declaration maps, and a
        mark in the undo journal for the rest (used paths, all-reduced inputs, tables split), so a spec with many
        `if`s does not copy every name for each one."""
        g = self.graph
        self._checking += 1
        return (len(g.ops), len(g.blocks), len(g.params), len(g.families), self._next_storage, dict(self.kinds),
                dict(self.global_tensors), len(g.expert_counts), len(g.splits), len(self.env.constraints),
                len(self._undo))

    def _release(self) -> None:
        """Keep what was built since the last snapshot (which is then not restored)."""
        self._checking -= 1
        if not self._checking:
            self._undo.clear()

    def _restore(self, snap) -> None:
        g = self.graph
        n_ops, n_blocks, n_params, n_fam, n_st, kinds, tensors, n_experts, n_splits, n_cons, n_undo = snap
        while len(self._undo) > n_undo:  # newest first: a branch may mark a declared table split, then more
            fn, args = self._undo.pop()
            fn(*args)
        self._checking -= 1
        del self.env.constraints[n_cons:]
        self.kinds, self.global_tensors = kinds, tensors
        del g.ops[n_ops:], g.blocks[n_blocks:], g.params[n_params:], g.families[n_fam:], g.expert_counts[n_experts:], g.splits[n_splits:]
        for sid in range(n_st, self._next_storage):
            g.storages.pop(sid, None)
        self._next_storage = n_st
