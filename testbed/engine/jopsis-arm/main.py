# Stand-in for /acestream/main.py of jopsis/acestream:arm32-* / arm64-*
# (jopsis/docker-acestream-arm@225f1ff, arm32/main.py, arm64/main.py). The real one overrides
# the DNS resolver, patches network checks, fakes the Android bridge (AceStream home /dev/shm)
# and runs the engine with Core.run(sys.argv): the command line is the engine's flags.
# The stand-in `python` (/acestream/python/bin/python) reads this file only for `# standin:` lines.
