#!/usr/bin/env python3
"""json_config.py — keep an application's JSON config in memfluxfs, from Python.

    usage: python3 examples/json_config.py MOUNTPOINT

The same steps as json_config.sh with the standard library only:

* whole document: json.dump into MOUNT/json/KEY (validated when the file is
  closed: invalid JSON makes close() raise OSError EINVAL and the stored
  document stays as it was);
* read: json.load;
* partial update of one field through the path view
  MOUNT/.ctl/json/KEY/<JSON path>: reading it gives that member's JSON text,
  writing it sets the member when the file is closed.  A missing path raises
  FileNotFoundError; an invalid value makes close() raise OSError EINVAL.
"""
import errno
import json
import os
import sys


def view(path, jpath):
    """MOUNT/json/KEY + "$.a.b" -> MOUNT/.ctl/json/KEY/$.a.b"""
    mnt = os.path.dirname(os.path.dirname(path))
    return os.path.join(mnt, ".ctl", "json", os.path.basename(path), jpath)


def get(path, jpath):
    """Value at a JSON path, e.g. get(p, "$.server.port"); None if absent."""
    try:
        with open(view(path, jpath)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def set_(path, jpath, value):
    """Set the value at a JSON path (adds the member if only the last step is missing)."""
    with open(view(path, jpath), "w") as f:
        json.dump(value, f)


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} MOUNTPOINT")
    mnt = sys.argv[1]
    if not os.path.isdir(os.path.join(mnt, "json")):
        sys.exit(f"{mnt} does not look like a memfluxfs mount")
    cfg = os.path.join(mnt, "json", "app-config-py")

    # Whole document.
    config = {
        "service": "billing",
        "server": {"host": "0.0.0.0", "port": 8080},
        "features": ["invoices"],
        "debug": False,
    }
    with open(cfg, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"stored {os.stat(cfg).st_size} bytes in {cfg}")

    with open(cfg) as f:
        loaded = json.load(f)
    assert loaded == config
    print("service:", loaded["service"])
    print("port:   ", loaded["server"]["port"])

    # Read-modify-write of the whole document.
    loaded["features"].append("metrics")
    loaded["debug"] = True
    with open(cfg, "w") as f:
        json.dump(loaded, f, indent=2)
    print("features:", json.load(open(cfg))["features"])

    # Partial updates: only that value's bytes change; formatting elsewhere stays.
    set_(cfg, "$.server.port", 9000)
    set_(cfg, "$.owner", "ops")                  # new member
    set_(cfg, "$.features[0]", "invoicing")
    set_(cfg, "$['odd key']", {"spaces": "ok"})  # any member name
    print("port:    ", get(cfg, "$.server.port"))
    print("owner:   ", get(cfg, "$.owner"))
    print("features:", get(cfg, "$.features"))
    print("missing: ", get(cfg, "$.no.such.field"))

    # Invalid JSON is refused when the file is closed; the config is untouched.
    before = open(cfg, "rb").read()
    try:
        with open(cfg, "w") as f:
            f.write('{"service": "billing",}')   # trailing comma
    except OSError as e:
        assert e.errno == errno.EINVAL, e
        print("invalid document refused:", os.strerror(e.errno))
    else:
        sys.exit("unexpected: invalid JSON was accepted")
    assert open(cfg, "rb").read() == before

    # An invalid value for a path too.
    try:
        with open(view(cfg, "$.debug"), "w") as f:
            f.write("yes")
    except OSError as e:
        assert e.errno == errno.EINVAL, e
        print("invalid value refused:", os.strerror(e.errno))
    else:
        sys.exit("unexpected: invalid value was accepted")
    assert open(cfg, "rb").read() == before

    final = json.load(open(cfg))
    print("final config:", json.dumps(final, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
