// Buttons of the "your sessions" page. Same-origin fetches pass the app's
// cross-origin protection; the page reloads to show the result.
document.addEventListener("click", async (ev) => {
  const el = ev.target;
  let res;
  if (el.matches("button.revoke")) {
    res = await fetch("/api/auth/sessions/" + encodeURIComponent(el.dataset.id), { method: "DELETE" });
  } else if (el.id === "revoke-others") {
    res = await fetch("/api/auth/sessions/revoke-others", { method: "POST" });
  } else {
    return;
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    alert(body.error || "Could not sign that session out.");
  }
  location.reload();
});
