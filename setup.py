"""Maps the four top-level folders onto the one import package `kybern`.

pyproject.toml holds the metadata; this file only lists the packages, because
setuptools cannot discover sub-packages through a package-dir mapping by itself.
"""

from setuptools import find_packages, setup

ROOTS = {
    "kybern": "core",
    "kybern.plugins": "plugins",
    "kybern.runtimes": "runtimes",
    "kybern.migrations": "migrations",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for name, folder in ROOTS.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")

setup(packages=packages, package_dir=package_dir)
