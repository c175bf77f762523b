"""The checks stage: what biv judges in the shipped tree beyond comparing files with upstream.

* ``archive``: links compared with upstream's, names that collide on Windows or macOS;
* ``electron``: Electron fuses and ASAR integrity;
* ``macos``: macOS bundle layout and the seals of ``.app`` bundles.

Each module reads the inventory's facts (``verifier.model``) and returns anomalies or
findings; none of them fetches, unpacks or compares (docs/INTERNALS.md "Layers").
"""
