// Choosing an image to classify, shared by the predict page and the standalone
// closure page: a file input and a drop zone both hand the chosen file to `use`.

export function onImageFile({ input, dropzone }, use) {
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("over");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
    use(event.dataTransfer.files[0]);
  });
  input.addEventListener("change", () => use(input.files[0]));
}
