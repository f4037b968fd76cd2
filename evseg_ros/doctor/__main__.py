"""``python -m evseg_ros.doctor``: the command without the rest of the ``evseg`` CLI."""

from __future__ import annotations

from evseg_ros.doctor.command import main

if __name__ == "__main__":
    raise SystemExit(main())
