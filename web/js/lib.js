// The one place the vendored library is imported from (Preact 10 + hooks + htm, no build step).
export {
  html,
  render,
  useState,
  useEffect,
  useRef,
  useMemo,
  useCallback,
  useContext,
  createContext,
} from "../vendor/htm-preact-standalone.module.js";
