"""The namespace runtime: id maps, mount plans, the zygote and pid 1.

Nothing in this package knows about OCI, registries or pytest: it runs a process tree in
fresh namespaces over a stack of directories.  ``client.Runtime`` is its only entry point
for the rest of the library.
"""
