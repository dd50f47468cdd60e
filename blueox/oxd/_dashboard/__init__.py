"""The live dashboard's page (index.html, dashboard.js, dashboard.css), served by oxd's ``--http``
(`blueox.oxd.dashboard`); a package so that the files are found with importlib.resources."""
