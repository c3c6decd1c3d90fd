"""A benchmark run: system profiles, the resolved plan, the runner that times and logs it, the display."""
