"""What handler authors import; re-exported from :mod:`jobhooks`."""
