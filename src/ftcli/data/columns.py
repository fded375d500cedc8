"""Per-example columns of a scan: line number and two 64-bit hashes, 20 bytes an example.

Kept as a list of small arrays (one per chunk of the file), so growing never reallocates and copies one big
block while the worker processes are still alive; numpy joins them once, at the end.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


Joined = tuple["npt.NDArray[np.uint32]", "npt.NDArray[np.int64]", "npt.NDArray[np.int64]"]


@dataclass(slots=True)
class ExampleColumns:
    parts: list[tuple[array[int], array[int], array[int]]] = field(default_factory=list)
    count: int = 0
    joined: Joined | None = None  # set by to_numpy(), which then drops the parts

    def append(self, line: int, exact: int, near: int) -> None:
        if not self.parts:
            self.parts.append((array("I"), array("q"), array("q")))
        lines, exacts, nears = self.parts[-1]
        lines.append(line)
        exacts.append(exact)
        nears.append(near)
        self.count += 1

    def extend(self, other: ExampleColumns) -> None:
        self.parts.extend(other.parts)
        self.count += other.count

    def to_numpy(self) -> Joined:
        """(lines, exact hashes, near hashes), in file order. Joins once and frees the parts: no second copy."""
        import numpy as np

        if self.joined is not None:
            return self.joined

        def join(index: int, dtype: type[np.generic]) -> npt.NDArray[np.generic]:
            arrays = [np.frombuffer(part[index], dtype=dtype) for part in self.parts if len(part[index])]
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)

        self.joined = (join(0, np.uint32), join(1, np.int64), join(2, np.int64))  # type: ignore[assignment]
        self.parts = []
        return self.joined  # type: ignore[return-value]
