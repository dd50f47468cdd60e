"""The ``twistd blueox`` plugin: names the oxd tap module, imports nothing else.

Twisted finds this file only in a ``twisted/plugins`` directory of a
``sys.path`` entry: site-packages after ``pip install .``, this checkout after
``pip install -e .`` (setup.py's ``package_dir`` sees to that). ``oxd`` runs
the same tap module without looking for this file.
"""

from twisted.application.service import ServiceMaker

blueox = ServiceMaker(
    "BlueOx collector (oxd)",
    "blueox.oxd.tap",
    "Collect, write, stream and forward BlueOx events.",
    "blueox",
)
