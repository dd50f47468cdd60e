"""Every tool's --help, as a user reads it: plain text, and the short options the README's table lists."""

import re

from twisted.trial.unittest import SynchronousTestCase

from tests.cli._run import run_tool

TOOLS = ("oxd", "oxctl", "oxview", "oxingest", "oxstore", "oxstash", "oxcert", "oxreport")


class HelpTests(SynchronousTestCase):
    def test_help_is_plain_text(self):
        """No tool's --help (nor oxstore's and oxcert's commands') carries reStructuredText markup."""
        commands = [(tool,) for tool in TOOLS]
        commands += [("oxstore", c) for c in ("zip", "prune", "upload", "download", "cat", "export", "archive")]
        commands += [("oxcert", c) for c in ("ca", "node", "check")]
        for command in commands:
            result = run_tool(*command, "--help")
            self.assertEqual(result.returncode, 0, (command, result.stderr))
            text = result.stdout.decode()
            self.assertNotIn("``", text, command)
            self.assertIsNone(re.search(r":(func|class|meth|option):`", text), command)

    def test_short_options_match_the_table(self):
        """Each short option the README's table lists means what it says in each tool."""
        expected = {
            "oxctl": {"-H": "--host", "-w": "--watch"},
            "oxview": {"-H": "--host", "-n": "--type-name", "-p": "--pretty"},
            "oxstash": {"-H": "--host", "-n": "--type-name", "-e": "--elasticsearch", "-p": "--index-base"},
            "oxingest": {"-H": "--host", "-c": "--collect", "-F": "--file", "-v": "--verbose"},
        }
        for tool, options in expected.items():
            text = run_tool(tool, "--help").stdout.decode()
            for short, long in options.items():
                pattern = rf"({re.escape(short)}\b[^\n]*{re.escape(long)}\b|{re.escape(long)}\b[^\n]*{re.escape(short)}\b)"
                self.assertRegex(text, pattern, f"{tool}: {short} is not {long}")
        text = run_tool("oxstore", "cat", "--help").stdout.decode()
        for short, long in {"-l": "--log-path", "-p": "--log-path", "-s": "--start", "-e": "--end", "-b": "--bucket"}.items():
            self.assertRegex(text, rf"{re.escape(long)}[^\n]*{re.escape(short)}\b", f"oxstore cat: {short}")
