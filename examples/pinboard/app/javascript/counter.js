// Shows how many characters a field still takes, next to fields with data-counter="<id>".
export function attachCounters(root) {
  root.querySelectorAll("[data-counter]").forEach((field) => {
    const out = root.getElementById(field.dataset.counter)
    const update = () => { out.textContent = `${field.maxLength - field.value.length} left` }
    field.addEventListener("input", update)
    update()
  })
}
