"""tinygpt.tools: the tool registry (schemas from signatures) and the file-system sandbox.

Imports `traces` only. The names below are the public surface; each lives in the module named for it.
"""
from tinygpt.tools.catalog import ToolsetSpecError, load_toolset, open_filesystem
from tinygpt.tools.fs_real import RealFileSystem
from tinygpt.tools.fs_tools import FS_OPERATIONS, FileSystem, fs_toolset
from tinygpt.tools.fs_virtual import FsFault, VirtualFileSystem
from tinygpt.tools.jail import Jail, SandboxError, SandboxEscape, SandboxReadOnly
from tinygpt.tools.registry import Toolset
from tinygpt.tools.tool import Tool, tool_from_function
from tinygpt.tools.worlds import default_world

__all__ = [
    "FS_OPERATIONS", "FileSystem", "FsFault", "Jail", "RealFileSystem", "SandboxError", "SandboxEscape",
    "SandboxReadOnly", "Tool", "Toolset", "ToolsetSpecError", "VirtualFileSystem",
    "default_world", "fs_toolset", "load_toolset", "open_filesystem", "tool_from_function",
]
