// What a researcher hands out: the volunteer link and the grid worker's command,
// and copying either to the clipboard.

// The volunteer page preselecting `projectId`, on the master's public origin.
export function shareLink(origin, projectId) {
  return `${origin.replace(/\/$/, "")}/?project=${encodeURIComponent(projectId)}`;
}

// A shell-safe single-quoted word, so ids and URLs paste into any POSIX shell.
const shellWord = (word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`);

// The complete command that makes a machine join `projectId` as a Python worker.
export function workerCommand(masterUrl, projectId) {
  return `mlitb worker --master ${shellWord(masterUrl.replace(/\/$/, ""))} --project ${shellWord(projectId)}`;
}

// Copy a read-only field's text; the Clipboard API where allowed, else the
// selection (older browsers, plain http on another host). True when copied.
export async function copyField(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.select();
    return document.execCommand?.("copy") ?? false;
  }
}
