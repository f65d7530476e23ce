"""Only what setup.cfg cannot say: the package list with the config tree mapped in.

`conf/` and `experiments/` sit at the top of the checkout (the design card's layout; `conf/experiment` links to
`experiments/`, the `experiment` group); the wheel ships them inside the package as `conf/`, where
bbuqc.runtime.paths looks first, so an installed bbuqc composes its configs from any folder.
"""

import os

from setuptools import find_packages, setup

# every folder of the config tree is a data-only package (the link to experiments/ followed)
CONF = sorted("bbuqc." + folder.replace(os.sep, ".") for folder, _, _ in os.walk("conf", followlinks=True))

setup(packages=[*find_packages(include=["bbuqc*"]), *CONF], package_dir={"bbuqc.conf": "conf"})
