// Unit tests run in plain Node: shared modules are tested without a DOM.
import { defineConfig } from 'vitest/config';

export default defineConfig({ test: { include: ['tests/**/*.test.js'] } });
