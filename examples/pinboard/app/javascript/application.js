// Entry point for the build script in your package.json
import { attachCounters } from "./counter"

document.addEventListener("DOMContentLoaded", () => attachCounters(document))
