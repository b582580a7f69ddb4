"""Install the project's top-level folders under one namespace, ``duet``.

The repository is organised by component (protos/, routing/, edge/, services/);
installed, they are ``duet.v1``, ``duet.routing``, ``duet.edge`` and
``duet.services``, so no generic top-level module name reaches site-packages.
Everything else about the distribution is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

# Import name -> folder in this repository.
ROOTS = {
    "duet": "protos/duet",
    "duet.routing": "routing",
    "duet.edge": "edge",
    "duet.services": "services",
}

# Every folder below a root, data folders (routing/data, store/migrations) included:
# setuptools installs folders, and listing them all keeps it from warning about each.
packages: list[str] = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [
        f"{name}.{sub}"
        for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])
        if f"{name}.{sub}" not in ROOTS
    ]

setup(packages=packages, package_dir=ROOTS)
