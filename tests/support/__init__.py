"""What the pipeline tests share: handler types, completion reports, real server processes.

``tests`` is on ``sys.path`` (pytest puts it there, and server processes get it
through ``PYTHONPATH``), so handlers here register as ``support.handlers:Class``.
"""
