"""The ``twistd blueox`` plugin: names the oxd tap module, imports nothing else."""

from twisted.application.service import ServiceMaker

blueox = ServiceMaker(
    "BlueOx collector (oxd)",
    "blueox.oxd.tap",
    "Collect, write, stream and forward BlueOx events.",
    "blueox",
)
