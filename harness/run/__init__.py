"""A benchmark run: system profiles, the plan flags and their typed overrides, the resolved plan, starting a
session, the runner that times and logs it, the display."""
