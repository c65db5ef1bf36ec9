"""An example jobhooks handler package: copy it, rename it, make it yours."""
