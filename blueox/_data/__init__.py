"""Files an installed BlueOx carries for operators, read with
``importlib.resources.files("blueox._data")``: ``oxd.toml`` (the commented
example config) and ``oxd.service`` (the systemd unit). In a checkout they
are links to contrib/oxd.toml and contrib/systemd/oxd.service; wheels and
installs hold copies.
"""
