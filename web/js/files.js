// Files from a drop (files and folders, every folder read to the end) or from a file input.

/** The files of a drop, with their paths. Entries are taken synchronously, while the event is live. */
export function entriesOf(dataTransfer) {
  const items = Array.from(dataTransfer.items || []);
  const entries = items
    .filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  return { entries, files: Array.from(dataTransfer.files || []) };
}

export async function filesFromDrop({ entries, files }) {
  if (!entries.length) return files.map((file) => ({ file, path: file.name }));
  const out = [];
  for (const entry of entries) await walk(entry, "", out);
  return out;
}

function readBatch(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

/** Every entry of a directory: readEntries answers at most 100 at a time, so it is called until it
 * answers none. */
export async function readAllEntries(directory) {
  const reader = directory.createReader();
  const all = [];
  for (;;) {
    const batch = await readBatch(reader);
    if (!batch.length) return all;
    all.push(...batch);
  }
}

async function walk(entry, prefix, out) {
  if (entry.name.startsWith(".")) return; // .DS_Store, .git, ...
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: `${prefix}${entry.name}` });
  } else if (entry.isDirectory) {
    for (const child of await readAllEntries(entry)) await walk(child, `${prefix}${entry.name}/`, out);
  }
}

export function filesFromInput(input) {
  return Array.from(input.files || []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}
