"""The 18 file-system operations as a Toolset, over either backend (virtual or real directory).

The docstrings and signatures below are the one source of the tools' schemas; their text is BFCL's
GorillaFileSystem function documentation, so prompts built here match BFCL's (tested). Tools are
listed alphabetically, as BFCL lists them. It does NOT implement any operation (tools/fs_virtual.py,
tools/fs_real.py do) and adds no behaviour: each method forwards its arguments unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Protocol

from tinygpt.tools.registry import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S, Toolset
from tinygpt.tools.tool import tool_from_function

FS_OPERATIONS = ("cat", "cd", "cp", "diff", "du", "echo", "find", "grep", "ls", "mkdir", "mv", "pwd", "rm",
                 "rmdir", "sort", "tail", "touch", "wc")
FS_PREAMBLE = ("This tool belongs to the Gorilla file system. It is a simple file system that allows users to "
               "perform basic file operations such as navigating directories, creating files and directories, "
               "reading and writing to files, etc. Tool description: ")


class FileSystem(Protocol):
    """What a backend provides: the 18 operations, each returning a dict (or None on silent success)."""
    def ls(self, a: bool = False) -> dict: ...
    def cd(self, folder: str) -> dict: ...
    def mkdir(self, dir_name: str) -> Optional[dict]: ...
    def touch(self, file_name: str) -> Optional[dict]: ...
    def echo(self, content: str, file_name: Optional[str] = None) -> Optional[dict]: ...
    def cat(self, file_name: str) -> dict: ...
    def find(self, path: str = ".", name: Optional[str] = None) -> dict: ...
    def wc(self, file_name: str, mode: str = "l") -> dict: ...
    def sort(self, file_name: str) -> dict: ...
    def grep(self, file_name: str, pattern: str) -> dict: ...
    def du(self, human_readable: bool = False) -> dict: ...
    def tail(self, file_name: str, lines: int = 10) -> dict: ...
    def diff(self, file_name1: str, file_name2: str) -> dict: ...
    def mv(self, source: str, destination: str) -> dict: ...
    def cp(self, source: str, destination: str) -> dict: ...
    def rm(self, file_name: str) -> dict: ...
    def rmdir(self, dir_name: str) -> dict: ...
    def pwd(self) -> dict: ...


def fs_toolset(fs: FileSystem, *, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
               max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS, brief: bool = False) -> Toolset:
    """A Toolset whose 18 tools run on `fs`. Descriptions are BFCL's, with its Gorilla file system preamble, or
    with `brief` the first sentence of each (and of each argument's), without the preamble: the same tools in a
    fifth of the prompt (tinygpt's own tool world and `--tools fs:...` use it; small models learn it)."""
    ops = FsTools(fs)
    tools = [tool_from_function(getattr(ops, name)) for name in FS_OPERATIONS]
    tools = [_brief(tool) if brief else replace(tool, description=FS_PREAMBLE + tool.description) for tool in tools]
    return Toolset(tools, timeout_s=timeout_s, max_output_chars=max_output_chars)


def _first_sentence(text: str) -> str:
    head = text.strip().split("\n\n")[0].replace("\n", " ")
    end = head.find(". ")
    return head if end < 0 else head[:end + 1]


def _brief(tool):
    properties = {name: {**spec, "description": _first_sentence(spec["description"])} if "description" in spec
                  else spec for name, spec in tool.parameters.get("properties", {}).items()}
    return replace(tool, description=_first_sentence(tool.description),
                   parameters={**tool.parameters, "properties": properties})


class FsTools:
    """The documented tool functions; each forwards to the backend."""

    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs

    def cat(self, file_name: str) -> dict:
        """Display the contents of a file of any extension from currrent directory.

        Args:
            file_name: The name of the file from current directory to display. No path is allowed.
        """
        return self.fs.cat(file_name)

    def cd(self, folder: str) -> dict:
        """Change the current working directory to the specified folder.

        Args:
            folder: The folder of the directory to change to. You can only change one folder level at a time.
        """
        return self.fs.cd(folder)

    def cp(self, source: str, destination: str) -> dict:
        """Copy a file or directory from one location to another.

        If the destination is a directory, the source file or directory will be copied into the
        destination directory.

        Both source and destination must be local to the current directory.

        Args:
            source: The name of the file or directory to copy.
            destination: The destination name to copy the file or directory to. If the destination is a
                directory, the source will be copied into this directory. No file paths allowed.
        """
        return self.fs.cp(source, destination)

    def diff(self, file_name1: str, file_name2: str) -> dict:
        """Compare two files of any extension line by line at the current directory.

        Args:
            file_name1: The name of the first file in current directory.
            file_name2: The name of the second file in current directory.
        """
        return self.fs.diff(file_name1, file_name2)

    def du(self, human_readable: bool = False) -> dict:
        """Estimate the disk usage of a directory and its contents.

        Args:
            human_readable: If True, returns the size in human-readable format (e.g., KB, MB).
        """
        return self.fs.du(human_readable)

    def echo(self, content: str, file_name: Optional[str] = None) -> Optional[dict]:
        """Write content to a file at current directory or display it in the terminal.

        Args:
            content: The content to write or display.
            file_name: The name of the file at current directory to write the content to. Defaults to None.
        """
        return self.fs.echo(content, file_name)

    def find(self, path: str = ".", name: Optional[str] = None) -> dict:
        """Find any file or directories under specific path that contain name in its file name.

        This method searches for files of any extension and directories within a specified path that match
        the given name. If no name is provided, it returns all files and directories in the specified path
        and its subdirectories. Note: This method performs a recursive search through all subdirectories of
        the given path.

        Args:
            path: The directory path to start the search. Defaults to the current directory (".").
            name: The name of the file or directory to search for. If None, all items are returned.
        """
        return self.fs.find(path, name)

    def grep(self, file_name: str, pattern: str) -> dict:
        """Search for lines in a file of any extension at current directory that contain the specified pattern.

        Args:
            file_name: The name of the file to search. No path is allowed and you can only perform on file at
                local directory.
            pattern: The pattern to search for.
        """
        return self.fs.grep(file_name, pattern)

    def ls(self, a: bool = False) -> dict:
        """List the contents of the current directory.

        Args:
            a: Show hidden files and directories. Defaults to False.
        """
        return self.fs.ls(a)

    def mkdir(self, dir_name: str) -> Optional[dict]:
        """Create a new directory in the current directory.

        Args:
            dir_name: The name of the new directory at current directory. You can only create directory at
                current directory.
        """
        return self.fs.mkdir(dir_name)

    def mv(self, source: str, destination: str) -> dict:
        """Move a file or directory from one location to another.

        Args:
            source: Source name of the file or directory to move. Source must be local to the current directory.
            destination: The destination name to move the file or directory to. Destination must be local to
                the current directory and cannot be a path. If destination is not an existing directory like
                when renaming something, destination is the new file name.
        """
        return self.fs.mv(source, destination)

    def pwd(self) -> dict:
        """Return the current working directory path."""
        return self.fs.pwd()

    def rm(self, file_name: str) -> dict:
        """Remove a file or directory.

        Args:
            file_name: The name of the file or directory to remove.
        """
        return self.fs.rm(file_name)

    def rmdir(self, dir_name: str) -> dict:
        """Remove a directory at current directory.

        Args:
            dir_name: The name of the directory to remove. Directory must be local to the current directory.
        """
        return self.fs.rmdir(dir_name)

    def sort(self, file_name: str) -> dict:
        """Sort the contents of a file line by line.

        Args:
            file_name: The name of the file appeared at current directory to sort.
        """
        return self.fs.sort(file_name)

    def tail(self, file_name: str, lines: int = 10) -> dict:
        """Display the last part of a file of any extension.

        Args:
            file_name: The name of the file to display. No path is allowed and you can only perform on file at
                local directory.
            lines: The number of lines to display from the end of the file. Defaults to 10.
        """
        return self.fs.tail(file_name, lines)

    def touch(self, file_name: str) -> Optional[dict]:
        """Create a new file of any extension in the current directory.

        Args:
            file_name: The name of the new file in the current directory. file_name is local to the current
                directory and does not allow path.
        """
        return self.fs.touch(file_name)

    def wc(self, file_name: str, mode: str = "l") -> dict:
        """Count the number of lines, words, and characters in a file of any extension from current directory.

        Args:
            file_name: Name of the file of current directory to perform wc operation on.
            mode: Mode of operation ('l' for lines, 'w' for words, 'c' for characters).
        """
        return self.fs.wc(file_name, mode)
