"""Data sets: preparation (seeded, checksummed) and loading (:mod:`geomvol.data.prepare`), the image data
sets (:mod:`geomvol.data.images`, :mod:`geomvol.data.digits`), anchor images (:mod:`geomvol.data.anchors`)
and the config checks that read the data (:mod:`geomvol.data.check`). Importing the package loads none
of them (nor torch)."""
