// The admin token: asked for once, in a modal dialog, and kept in localStorage.

const TOKEN_KEY = "mlitb.adminToken";

export const adminToken = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set: (token) => localStorage.setItem(TOKEN_KEY, token),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

let pending = null;

export function askForToken(message = "Researcher actions need the admin token (printed by `mlitb serve`).") {
  pending ??= new Promise((resolve, reject) => {
    const dialog = document.createElement("dialog");
    dialog.className = "token-dialog";
    dialog.innerHTML = `
      <form method="dialog">
        <h2>Admin token</h2>
        <p class="hint"></p>
        <label>Token <input name="token" type="password" autocomplete="current-password" required></label>
        <menu><button value="cancel" formnovalidate class="secondary">Cancel</button><button value="ok">Save</button></menu>
      </form>`;
    dialog.querySelector(".hint").textContent = message;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const token = dialog.querySelector("input").value.trim();
      dialog.remove();
      pending = null;
      if (dialog.returnValue === "ok" && token) {
        adminToken.set(token);
        resolve(token);
      } else reject(new Error("an admin token is needed for this action"));
    });
    dialog.showModal();
  });
  return pending;
}
